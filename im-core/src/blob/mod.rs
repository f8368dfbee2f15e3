//! File storage for file messages: the [`BlobStore`] trait, a local
//! directory backend ([`DirBlobStore`]; the server's default is the same
//! layout through `ObjectBlobStore` when it has `object-store`) and an
//! in-memory one.
//!
//! A blob is written once under an id the server chooses, with its size,
//! SHA-256, content type and name; a file message carries the id
//! (`File.blob_id`). Uploads stream in ([`BlobStore::put_stream`]): the
//! directory store writes and hashes each chunk as it arrives, so an
//! upload costs one chunk of memory whatever its size. [`ObjectBlobStore`]
//! (feature `object-store`) keeps blobs on the `object_store` crate: a
//! folder every cluster node shares, or with more features S3, GCS or
//! Azure. Plug in your own store by implementing the trait.

#[cfg(feature = "object-store")]
mod object;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::model::UserId;
use crate::{Error, Result};
#[cfg(feature = "object-store")]
pub use object::{ObjectBlobStore, PART_BYTES};

/// What is known about a stored blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobMeta {
    /// The id a file message refers to.
    pub id: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the bytes, lowercase hex.
    pub sha256: String,
    /// The uploader's content type, e.g. `image/png`.
    pub content_type: String,
    /// The uploader's file name (may be empty).
    pub name: String,
    /// Who uploaded it (the system user for admin uploads).
    pub owner: UserId,
    /// When it was stored, Unix milliseconds.
    pub created_ms: u64,
}

/// A fresh blob id.
fn new_blob_id() -> String {
    format!("f{}", uuid::Uuid::now_v7().simple())
}

/// What is known of an upload before its bytes arrive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobDraft {
    /// The uploader's content type.
    pub content_type: String,
    /// The uploader's file name (may be empty).
    pub name: String,
    /// Who uploads it.
    pub owner: UserId,
    /// When, Unix milliseconds.
    pub created_ms: u64,
}

impl BlobDraft {
    /// The metadata of this upload, stored under `id` with its size and hash.
    pub(crate) fn stored(self, id: String, size: u64, sha256: String) -> BlobMeta {
        BlobMeta {
            id,
            size,
            sha256,
            content_type: self.content_type,
            name: self.name,
            owner: self.owner,
            created_ms: self.created_ms,
        }
    }
}

/// Where [`BlobStore::put_stream`] reads an upload from, a chunk at a time
/// (an HTTP request body, a file).
#[async_trait]
pub trait ChunkSource: Send {
    /// The next chunk; `Ok(None)` at the end. An error aborts the upload
    /// and nothing is stored.
    async fn next_chunk(&mut self) -> std::io::Result<Option<Bytes>>;
}

fn upload_failed(e: std::io::Error) -> Error {
    Error::InvalidArgument(format!("upload failed: {e}"))
}

impl BlobMeta {
    /// Metadata for `data`: a fresh id and the bytes' hash and size.
    pub fn describe(
        data: &[u8],
        content_type: &str,
        name: &str,
        owner: UserId,
        created_ms: u64,
    ) -> BlobMeta {
        BlobMeta {
            id: new_blob_id(),
            size: data.len() as u64,
            sha256: hex(&Sha256::digest(data)),
            content_type: content_type.to_owned(),
            name: name.to_owned(),
            owner,
            created_ms,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `id` has the shape [`BlobMeta::describe`] gives ids, so a
/// backend can refuse anything else before touching storage.
pub fn valid_blob_id(id: &str) -> bool {
    id.len() == 33 && id.starts_with('f') && id[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// Where file bytes live.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Stores `data` under `meta.id`. Fails with `Conflict` if the id is taken.
    async fn put(&self, meta: BlobMeta, data: Bytes) -> Result<()>;

    /// The blob's metadata and bytes, or `None`.
    async fn get(&self, id: &str) -> Result<Option<(BlobMeta, Bytes)>>;

    /// The blob's metadata alone, or `None`. The default reads the whole
    /// blob; a store that keeps metadata apart should override it.
    async fn meta(&self, id: &str) -> Result<Option<BlobMeta>> {
        Ok(self.get(id).await?.map(|(meta, _)| meta))
    }

    /// `len` bytes from `start` (fewer at the end of the blob), or `None`
    /// when there is no such blob. For HTTP range requests: a player
    /// seeking in a video, a download resumed. The default slices
    /// [`BlobStore::get`]; a store that can read a range should.
    async fn read_range(&self, id: &str, start: u64, len: u64) -> Result<Option<Bytes>> {
        Ok(self.get(id).await?.map(|(_, data)| {
            let from = usize::try_from(start).unwrap_or(usize::MAX).min(data.len());
            let to = from
                .saturating_add(usize::try_from(len).unwrap_or(usize::MAX))
                .min(data.len());
            data.slice(from..to)
        }))
    }

    /// Stores an upload as its chunks arrive, under a fresh id; returns its
    /// metadata. If `source` fails, nothing is stored. The default
    /// collects the chunks and calls [`BlobStore::put`]; a store that can
    /// write as it goes (as [`DirBlobStore`] does) should, so an upload
    /// does not cost its size in memory.
    async fn put_stream(&self, draft: BlobDraft, source: &mut dyn ChunkSource) -> Result<BlobMeta> {
        let mut data = bytes::BytesMut::new();
        while let Some(chunk) = source.next_chunk().await.map_err(upload_failed)? {
            data.extend_from_slice(&chunk);
        }
        let meta = BlobMeta::describe(
            &data,
            &draft.content_type,
            &draft.name,
            draft.owner,
            draft.created_ms,
        );
        self.put(meta.clone(), data.freeze()).await?;
        Ok(meta)
    }
}

/// Blobs in memory: for tests and throwaway servers.
#[derive(Default)]
pub struct MemoryBlobStore {
    blobs: Mutex<HashMap<String, (BlobMeta, Bytes)>>,
}

impl std::fmt::Debug for MemoryBlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBlobStore")
            .field("blobs", &self.blobs.lock().len())
            .finish()
    }
}

#[async_trait]
impl BlobStore for MemoryBlobStore {
    async fn put(&self, meta: BlobMeta, data: Bytes) -> Result<()> {
        let mut blobs = self.blobs.lock();
        if blobs.contains_key(&meta.id) {
            return Err(Error::Conflict(format!("blob {} exists", meta.id)));
        }
        blobs.insert(meta.id.clone(), (meta, data));
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<(BlobMeta, Bytes)>> {
        Ok(self.blobs.lock().get(id).cloned())
    }
}

/// Blobs as files in a local directory: `<id>` holds the bytes and
/// `<id>.meta` the metadata (one `key=value` per line). Each file is
/// written to a temporary name, synced and renamed, so a crash never leaves
/// half a blob under its id.
#[derive(Debug, Clone)]
pub struct DirBlobStore {
    dir: PathBuf,
}

impl DirBlobStore {
    /// Uses `dir`, creating it if needed.
    pub fn open(dir: impl AsRef<Path>) -> Result<DirBlobStore> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::store("blob", format!("cannot create {}: {e}", dir.display())))?;
        Ok(DirBlobStore { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::store("blob", format!("{what} {}: {e}", path.display()))
}

fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| io_err("cannot create", &tmp, e))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| io_err("cannot write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_err("cannot rename", &tmp, e))
}

fn encode_meta(m: &BlobMeta) -> String {
    // Values are single-line: names and content types have newlines removed.
    let clean = |s: &str| s.replace(['\n', '\r'], " ");
    format!(
        "id={}\nsize={}\nsha256={}\ncontent_type={}\nname={}\nowner={}\ncreated_ms={}\n",
        m.id,
        m.size,
        m.sha256,
        clean(&m.content_type),
        clean(&m.name),
        m.owner,
        m.created_ms
    )
}

fn decode_meta(text: &str) -> Option<BlobMeta> {
    let fields: HashMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
    Some(BlobMeta {
        id: (*fields.get("id")?).to_owned(),
        size: fields.get("size")?.parse().ok()?,
        sha256: (*fields.get("sha256")?).to_owned(),
        content_type: (*fields.get("content_type")?).to_owned(),
        name: (*fields.get("name")?).to_owned(),
        owner: UserId::new(*fields.get("owner")?),
        created_ms: fields.get("created_ms")?.parse().ok()?,
    })
}

impl DirBlobStore {
    /// Writes `source` to `part` as it arrives, syncs it, and returns its
    /// size and SHA-256.
    async fn receive(part: &Path, source: &mut dyn ChunkSource) -> Result<(u64, String)> {
        use tokio::io::AsyncWriteExt;
        let mut file = tokio::fs::File::create(part)
            .await
            .map_err(|e| io_err("cannot create", part, e))?;
        let mut hash = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = source.next_chunk().await.map_err(upload_failed)? {
            hash.update(&chunk);
            size += chunk.len() as u64;
            file.write_all(&chunk)
                .await
                .map_err(|e| io_err("cannot write", part, e))?;
        }
        file.sync_all()
            .await
            .map_err(|e| io_err("cannot sync", part, e))?;
        Ok((size, hex(&hash.finalize())))
    }
}

#[async_trait]
impl BlobStore for DirBlobStore {
    async fn put_stream(&self, draft: BlobDraft, source: &mut dyn ChunkSource) -> Result<BlobMeta> {
        let id = new_blob_id();
        let path = self.dir.join(&id);
        let part = path.with_extension("part");
        let (size, sha256) = match Self::receive(&part, source).await {
            Ok(received) => received,
            Err(e) => {
                let _ = tokio::fs::remove_file(&part).await;
                return Err(e);
            }
        };
        let meta = draft.stored(id, size, sha256);
        let (dir, m) = (self.dir.clone(), meta.clone());
        tokio::task::spawn_blocking(move || {
            std::fs::rename(&part, &path).map_err(|e| io_err("cannot rename", &part, e))?;
            // The bytes are in place; the blob is visible once its .meta is.
            write_atomically(
                &dir.join(format!("{}.meta", m.id)),
                encode_meta(&m).as_bytes(),
            )
        })
        .await
        .map_err(|e| Error::store("blob", format!("write task failed: {e}")))??;
        Ok(meta)
    }

    async fn put(&self, meta: BlobMeta, data: Bytes) -> Result<()> {
        if !valid_blob_id(&meta.id) {
            return Err(Error::InvalidArgument(format!("bad blob id {:?}", meta.id)));
        }
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            let path = dir.join(&meta.id);
            if path.exists() {
                return Err(Error::Conflict(format!("blob {} exists", meta.id)));
            }
            // Bytes first, metadata last: a blob is visible once its .meta is.
            write_atomically(&path, &data)?;
            write_atomically(
                &dir.join(format!("{}.meta", meta.id)),
                encode_meta(&meta).as_bytes(),
            )
        })
        .await
        .map_err(|e| Error::store("blob", format!("write task failed: {e}")))?
    }

    async fn get(&self, id: &str) -> Result<Option<(BlobMeta, Bytes)>> {
        if !valid_blob_id(id) {
            return Ok(None);
        }
        let dir = self.dir.clone();
        let id = id.to_owned();
        tokio::task::spawn_blocking(move || {
            let meta_path = dir.join(format!("{id}.meta"));
            let text = match std::fs::read_to_string(&meta_path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io_err("cannot read", &meta_path, e)),
            };
            let meta = decode_meta(&text).ok_or_else(|| {
                Error::store("blob", format!("{} is corrupt", meta_path.display()))
            })?;
            let path = dir.join(&id);
            let data = std::fs::read(&path).map_err(|e| io_err("cannot read", &path, e))?;
            Ok(Some((meta, Bytes::from(data))))
        })
        .await
        .map_err(|e| Error::store("blob", format!("read task failed: {e}")))?
    }

    async fn meta(&self, id: &str) -> Result<Option<BlobMeta>> {
        if !valid_blob_id(id) {
            return Ok(None);
        }
        let path = self.dir.join(format!("{id}.meta"));
        tokio::task::spawn_blocking(move || read_meta(&path))
            .await
            .map_err(|e| Error::store("blob", format!("read task failed: {e}")))?
    }

    async fn read_range(&self, id: &str, start: u64, len: u64) -> Result<Option<Bytes>> {
        use std::io::{Read, Seek, SeekFrom};
        if !valid_blob_id(id) {
            return Ok(None);
        }
        let path = self.dir.join(id);
        tokio::task::spawn_blocking(move || {
            let mut f = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io_err("cannot open", &path, e)),
            };
            let size = f
                .metadata()
                .map_err(|e| io_err("cannot stat", &path, e))?
                .len();
            let len = len.min(size.saturating_sub(start));
            let mut buf = vec![0; usize::try_from(len).unwrap_or(0)];
            f.seek(SeekFrom::Start(start))
                .and_then(|_| f.read_exact(&mut buf))
                .map_err(|e| io_err("cannot read", &path, e))?;
            Ok(Some(Bytes::from(buf)))
        })
        .await
        .map_err(|e| Error::store("blob", format!("read task failed: {e}")))?
    }
}

/// Reads and decodes a `.meta` file; `None` if there is none.
fn read_meta(path: &Path) -> Result<Option<BlobMeta>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("cannot read", path, e)),
    };
    decode_meta(&text)
        .map(Some)
        .ok_or_else(|| Error::store("blob", format!("{} is corrupt", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn conforms(store: &dyn BlobStore) {
        let data = Bytes::from_static(b"hello, file");
        let meta = BlobMeta::describe(&data, "text/plain", "hello.txt", UserId::from("ada"), 7);
        assert!(valid_blob_id(&meta.id), "{}", meta.id);
        assert_eq!(meta.size, 11);
        // sha256sum of "hello, file".
        assert_eq!(
            meta.sha256,
            "4444d0751827a9f4783eba8fcbc44f20225d068050b48310850b702b4cfbebdd"
        );
        assert_eq!(store.get(&meta.id).await.expect("get"), None);
        store.put(meta.clone(), data.clone()).await.expect("put");
        let (got, bytes) = store.get(&meta.id).await.expect("get").expect("stored");
        assert_eq!(got, meta);
        assert_eq!(bytes, data);
        assert!(matches!(
            store.put(meta.clone(), Bytes::from_static(b"other")).await,
            Err(Error::Conflict(_))
        ));
        assert_eq!(store.get("../etc/passwd").await.expect("get"), None);
        // Metadata alone, and byte ranges (clipped at the end).
        assert_eq!(
            store.meta(&meta.id).await.expect("meta"),
            Some(meta.clone())
        );
        assert_eq!(store.meta("nope").await.expect("meta"), None);
        let range = |start, len| store.read_range(&meta.id, start, len);
        assert_eq!(
            range(7, 4).await.expect("range").as_deref(),
            Some(&b"file"[..])
        );
        assert_eq!(
            range(0, 5).await.expect("range").as_deref(),
            Some(&b"hello"[..])
        );
        assert_eq!(
            range(9, 100).await.expect("range").as_deref(),
            Some(&b"le"[..])
        );
        assert_eq!(
            range(11, 1).await.expect("range").as_deref(),
            Some(&b""[..])
        );
        assert_eq!(store.read_range("nope", 0, 1).await.expect("range"), None);
    }

    /// Chunks from a list, then optionally an error.
    struct Chunks(Vec<Bytes>, bool);

    #[async_trait]
    impl ChunkSource for Chunks {
        async fn next_chunk(&mut self) -> std::io::Result<Option<Bytes>> {
            if self.0.is_empty() {
                return if self.1 {
                    Err(std::io::Error::other("client went away"))
                } else {
                    Ok(None)
                };
            }
            Ok(Some(self.0.remove(0)))
        }
    }

    /// Streamed uploads: stored whole with the hash of all their chunks,
    /// or, when the source fails, not at all.
    async fn streams(store: &dyn BlobStore) -> BlobMeta {
        let draft = BlobDraft {
            content_type: "text/plain".into(),
            name: "hello.txt".into(),
            owner: UserId::from("ada"),
            created_ms: 7,
        };
        let mut source = Chunks(
            vec![Bytes::from_static(b"hello, "), Bytes::from_static(b"file")],
            false,
        );
        let meta = store
            .put_stream(draft.clone(), &mut source)
            .await
            .expect("stream");
        assert!(valid_blob_id(&meta.id));
        assert_eq!(meta.size, 11);
        assert_eq!(
            meta.sha256,
            "4444d0751827a9f4783eba8fcbc44f20225d068050b48310850b702b4cfbebdd"
        );
        let (got, bytes) = store.get(&meta.id).await.expect("get").expect("stored");
        assert_eq!((got, &bytes[..]), (meta.clone(), &b"hello, file"[..]));
        let mut failing = Chunks(vec![Bytes::from_static(b"half")], true);
        assert!(matches!(
            store.put_stream(draft, &mut failing).await,
            Err(Error::InvalidArgument(_))
        ));
        meta
    }

    #[cfg(feature = "object-store")]
    #[tokio::test]
    async fn object_store_conforms_and_a_second_store_reads_what_the_first_wrote() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = ObjectBlobStore::local(dir.path()).expect("open");
        conforms(&first).await;
        let streamed = streams(&first).await;
        // Another node mounting the same folder.
        let url = format!("file://{}", dir.path().display());
        let second = ObjectBlobStore::from_url(&url, Vec::new()).expect("open by URL");
        let (meta, bytes) = second
            .get(&streamed.id)
            .await
            .expect("get")
            .expect("the second store sees the first's blob");
        assert_eq!((meta, &bytes[..]), (streamed.clone(), &b"hello, file"[..]));
        assert_eq!(
            second
                .read_range(&streamed.id, 7, 100)
                .await
                .expect("range")
                .as_deref(),
            Some(&b"file"[..])
        );
        // A failed upload left nothing behind: the two blobs of `conforms`
        // and `streams`, each with its metadata.
        let mut files: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        files.sort();
        assert_eq!(files.len(), 4, "{files:?}");
        // An upload bigger than a part streams through several.
        let big = Bytes::from(vec![42u8; PART_BYTES * 2 + 123]);
        let mut source = Chunks(
            big.chunks(64 * 1024).map(Bytes::copy_from_slice).collect(),
            false,
        );
        let draft = BlobDraft {
            content_type: "application/octet-stream".into(),
            name: "big.bin".into(),
            owner: UserId::from("ada"),
            created_ms: 9,
        };
        let meta = first
            .put_stream(draft, &mut source)
            .await
            .expect("stream a big one");
        assert_eq!(meta.size, big.len() as u64);
        assert_eq!(meta.sha256, hex(&Sha256::digest(&big)));
        let tail = second
            .read_range(&meta.id, (PART_BYTES * 2) as u64, 1_000)
            .await
            .expect("range")
            .expect("there");
        assert_eq!(tail.len(), 123);
    }

    /// Without the s3 feature an s3:// URL is refused with a clear error;
    /// with it, the URL and settings make a store (no S3 runs here: a
    /// write to a closed port fails cleanly).
    #[cfg(feature = "object-store")]
    #[tokio::test]
    async fn s3_urls_need_their_feature_and_take_settings() {
        let settings = vec![
            ("aws_region".to_owned(), "us-east-1".to_owned()),
            ("aws_endpoint".to_owned(), "http://127.0.0.1:9".to_owned()),
            ("aws_access_key_id".to_owned(), "k".to_owned()),
            ("aws_secret_access_key".to_owned(), "s".to_owned()),
            ("aws_allow_http".to_owned(), "true".to_owned()),
        ];
        let made = ObjectBlobStore::from_url("s3://bucket/files", settings);
        if cfg!(feature = "s3") {
            let store = made.expect("an s3 store");
            let data = Bytes::from_static(b"x");
            let meta = BlobMeta::describe(&data, "text/plain", "x", UserId::from("ada"), 1);
            assert!(
                store.put(meta, data).await.is_err(),
                "nothing listens there"
            );
        } else {
            let err = made.expect_err("no s3 feature");
            assert!(err.to_string().contains("s3"), "{err}");
        }
        assert!(ObjectBlobStore::from_url("not a url", Vec::new()).is_err());
    }

    #[tokio::test]
    async fn memory_conforms() {
        conforms(&MemoryBlobStore::default()).await;
        streams(&MemoryBlobStore::default()).await;
    }

    #[tokio::test]
    async fn a_failed_stream_leaves_no_file_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DirBlobStore::open(dir.path()).expect("open");
        let meta = streams(&store).await;
        let mut files: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(files, [meta.id.clone(), format!("{}.meta", meta.id)]);
    }

    #[tokio::test]
    async fn dir_conforms_and_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DirBlobStore::open(dir.path()).expect("open");
        conforms(&store).await;
        let data = Bytes::from(vec![7u8; 100_000]);
        let meta = BlobMeta::describe(
            &data,
            "application/octet-stream",
            "a\nb",
            UserId::from("x"),
            1,
        );
        store.put(meta.clone(), data.clone()).await.expect("put");
        let reopened = DirBlobStore::open(dir.path()).expect("reopen");
        let (got, bytes) = reopened.get(&meta.id).await.expect("get").expect("there");
        assert_eq!(bytes, data);
        assert_eq!(got.name, "a b", "newlines cannot break the metadata file");
    }
}
