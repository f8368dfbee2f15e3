//! [`ObjectBlobStore`] (feature `object-store`): blobs on the
//! [`object_store`] crate. By default that is a local folder, which can be
//! a shared one every cluster node mounts. With the features `s3`, `gcs`
//! and `azure` it can also be a bucket.
//!
//! Objects: `{prefix}/{id}` holds the bytes and `{prefix}/{id}.meta` the
//! metadata, in the same `key=value` lines as [`super::DirBlobStore`]. The
//! metadata is written last, so a blob is visible once it is whole. Uploads
//! stream through a multipart upload in parts of [`PART_BYTES`] (S3's
//! minimum), at most two parts in flight. An upload therefore holds about
//! 15 MiB in memory, whatever its size. Range reads fetch only the range.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, WriteMultipart};
use sha2::{Digest, Sha256};

use super::{
    BlobDraft, BlobMeta, BlobStore, ChunkSource, decode_meta, encode_meta, hex, new_blob_id,
    upload_failed, valid_blob_id,
};
use crate::{Error, Result};

/// Bytes per part of a streamed upload (5 MiB).
pub const PART_BYTES: usize = 5 << 20;

/// Parts of one upload in flight at once.
const PARTS_IN_FLIGHT: usize = 2;

fn os_err(what: &str, e: object_store::Error) -> Error {
    Error::store("blob", format!("{what}: {e}"))
}

/// Blobs in an [`ObjectStore`].
#[derive(Debug, Clone)]
pub struct ObjectBlobStore {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
}

impl ObjectBlobStore {
    /// Blobs under `prefix` in `store`.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> ObjectBlobStore {
        ObjectBlobStore {
            store,
            prefix: Path::from(prefix),
        }
    }

    /// Blobs in a local folder (created if needed); several processes may
    /// share it.
    pub fn local(dir: impl AsRef<std::path::Path>) -> Result<ObjectBlobStore> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::store("blob", format!("cannot create {}: {e}", dir.display())))?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| os_err("cannot open the folder", e))?;
        Ok(ObjectBlobStore::new(Arc::new(fs), ""))
    }

    /// Blobs at a URL: `file:///path`, and with the features `s3`, `gcs`
    /// or `azure` also `s3://bucket/prefix`, `gs://bucket/prefix` or
    /// `az://container/prefix`. `options` are the store's settings
    /// (`aws_region`, `aws_endpoint` for S3-compatible stores,
    /// `google_service_account`, ...); [`ObjectBlobStore::env_options`]
    /// collects them from the environment.
    pub fn from_url(
        url: &str,
        options: impl IntoIterator<Item = (String, String)>,
    ) -> Result<ObjectBlobStore> {
        let parsed = url::Url::parse(url)
            .map_err(|e| Error::InvalidArgument(format!("blob store URL {url:?}: {e}")))?;
        if parsed.scheme() == "file" {
            let dir = parsed.to_file_path().map_err(|()| {
                Error::InvalidArgument(format!("blob store URL {url:?} is not a local path"))
            })?;
            return ObjectBlobStore::local(dir);
        }
        let (store, prefix) = object_store::parse_url_opts(&parsed, options).map_err(|e| {
            Error::InvalidArgument(format!(
                "blob store URL {url:?}: {e} (s3://, gs:// and az:// need the s3, gcs and azure features)"
            ))
        })?;
        Ok(ObjectBlobStore::new(Arc::from(store), prefix.as_ref()))
    }

    /// The object store settings in the environment: every `AWS_*`,
    /// `GOOGLE_*` and `AZURE_*` variable, lowercased.
    pub fn env_options() -> Vec<(String, String)> {
        std::env::vars()
            .filter(|(k, _)| {
                k.starts_with("AWS_") || k.starts_with("GOOGLE_") || k.starts_with("AZURE_")
            })
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect()
    }

    fn data_path(&self, id: &str) -> Path {
        self.prefix.clone().join(id)
    }

    fn meta_path(&self, id: &str) -> Path {
        self.prefix.clone().join(format!("{id}.meta"))
    }

    async fn write_meta(&self, meta: &BlobMeta) -> Result<()> {
        self.store
            .put(
                &self.meta_path(&meta.id),
                Bytes::from(encode_meta(meta)).into(),
            )
            .await
            .map(drop)
            .map_err(|e| os_err("cannot write metadata", e))
    }

    /// Streams `source` into a multipart upload at `path`, hashing it.
    async fn receive(&self, path: &Path, source: &mut dyn ChunkSource) -> Result<(u64, String)> {
        let upload = self
            .store
            .put_multipart(path)
            .await
            .map_err(|e| os_err("cannot start an upload", e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut hash = Sha256::new();
        let mut size = 0u64;
        loop {
            let chunk = match source.next_chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(upload_failed(e));
                }
            };
            hash.update(&chunk);
            size += chunk.len() as u64;
            if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                let _ = writer.abort().await;
                return Err(os_err("cannot upload a part", e));
            }
            writer.put(chunk);
        }
        writer
            .finish()
            .await
            .map_err(|e| os_err("cannot finish an upload", e))?;
        Ok((size, hex(&hash.finalize())))
    }
}

#[async_trait]
impl BlobStore for ObjectBlobStore {
    async fn put(&self, meta: BlobMeta, data: Bytes) -> Result<()> {
        if !valid_blob_id(&meta.id) {
            return Err(Error::InvalidArgument(format!("bad blob id {:?}", meta.id)));
        }
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&self.data_path(&meta.id), data.into(), options)
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                return Err(Error::Conflict(format!("blob {} exists", meta.id)));
            }
            Err(e) => return Err(os_err("cannot write", e)),
        }
        self.write_meta(&meta).await
    }

    async fn put_stream(&self, draft: BlobDraft, source: &mut dyn ChunkSource) -> Result<BlobMeta> {
        let id = new_blob_id();
        let (size, sha256) = self.receive(&self.data_path(&id), source).await?;
        let meta = draft.stored(id, size, sha256);
        self.write_meta(&meta).await?;
        Ok(meta)
    }

    async fn get(&self, id: &str) -> Result<Option<(BlobMeta, Bytes)>> {
        let Some(meta) = self.meta(id).await? else {
            return Ok(None);
        };
        let data = self
            .store
            .get(&self.data_path(id))
            .await
            .map_err(|e| os_err("cannot read", e))?
            .bytes()
            .await
            .map_err(|e| os_err("cannot read", e))?;
        Ok(Some((meta, data)))
    }

    async fn meta(&self, id: &str) -> Result<Option<BlobMeta>> {
        if !valid_blob_id(id) {
            return Ok(None);
        }
        let got = match self.store.get(&self.meta_path(id)).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(os_err("cannot read metadata", e)),
        };
        let bytes = got
            .bytes()
            .await
            .map_err(|e| os_err("cannot read metadata", e))?;
        let text = String::from_utf8_lossy(&bytes);
        decode_meta(&text)
            .map(Some)
            .ok_or_else(|| Error::store("blob", format!("the metadata of {id} is corrupt")))
    }

    async fn read_range(&self, id: &str, start: u64, len: u64) -> Result<Option<Bytes>> {
        let Some(meta) = self.meta(id).await? else {
            return Ok(None);
        };
        let from = start.min(meta.size);
        let to = from.saturating_add(len).min(meta.size);
        if from == to {
            return Ok(Some(Bytes::new()));
        }
        self.store
            .get_range(&self.data_path(id), from..to)
            .await
            .map(Some)
            .map_err(|e| os_err("cannot read", e))
    }
}
