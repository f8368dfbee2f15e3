//! The in-memory backend passes the store conformance suite.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_stores_conform() {
    imkit_core::testing::run_all(imkit_core::store::Stores::memory()).await;
}
