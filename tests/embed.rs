//! examples/embed.rs runs as written: a server and two clients in one
//! process, a message from one to the other.

#[path = "../examples/embed.rs"]
mod embed;

#[test]
fn the_embedding_example_runs() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(embed::main().map_err(|e| e.to_string()));
    });
    match rx.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(result) => result.expect("the example succeeds"),
        Err(_) => panic!("the example did not finish within a minute"),
    }
}
