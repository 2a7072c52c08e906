//! `/v1/files`: uploads kept under the server's data directory.
//!
//! Each file is stored as `ID.data` with its `OpenAIFile` record in `ID.json`. Uploads for
//! `fine-tune` are validated line by line as chat conversations before they are stored.

use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use selfaware_backend::finetune::validate_jsonl;
use selfaware_backend::openai::{FileList, FileObject};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::routes::{now, AppState};
use crate::{ApiError, ServerError};

/// Purposes OpenAI accepts.
const PURPOSES: [&str; 6] = [
    "fine-tune",
    "batch",
    "assistants",
    "vision",
    "user_data",
    "evals",
];

pub(crate) struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    pub fn open(dir: &FsPath) -> Result<Self, ServerError> {
        fs_err::create_dir_all(dir).map_err(|source| ServerError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(FileStore {
            dir: dir.to_path_buf(),
        })
    }

    fn meta_path(&self, id: &str) -> Result<PathBuf, ApiError> {
        check_id(id)?;
        Ok(self.dir.join(format!("{id}.json")))
    }

    pub(crate) fn data_path(&self, id: &str) -> Result<PathBuf, ApiError> {
        check_id(id)?;
        Ok(self.dir.join(format!("{id}.data")))
    }

    pub(crate) fn get(&self, id: &str) -> Result<FileObject, ApiError> {
        let p = self.meta_path(id)?;
        let text = std::fs::read_to_string(&p).map_err(|_| no_file(id))?;
        serde_json::from_str(&text)
            .map_err(|e| ApiError::internal(format!("file record {} is corrupt: {e}", p.display())))
    }

    fn all(&self) -> Result<Vec<FileObject>, ApiError> {
        let mut out = Vec::new();
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| ApiError::internal(format!("cannot list {}: {e}", self.dir.display())))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(".json") {
                out.push(self.get(id)?);
            }
        }
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }
}

/// Ids are ours (`file-` + hex); anything else cannot name a stored file.
fn check_id(id: &str) -> Result<(), ApiError> {
    let ok = id
        .strip_prefix("file-")
        .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(no_file(id))
    }
}

fn no_file(id: &str) -> ApiError {
    ApiError::not_found(format!("No such file: `{id}`"), "file_not_found")
}

fn store(s: &AppState) -> Result<&FileStore, ApiError> {
    s.files.as_ref().ok_or_else(|| {
        ApiError::internal("this server was started without a data directory, so it keeps no files")
            .with_status(StatusCode::NOT_IMPLEMENTED)
    })
}

fn write(path: &FsPath, bytes: &[u8]) -> Result<(), ApiError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| ApiError::internal(format!("cannot write {}: {e}", path.display())))
}

fn multipart_error(e: impl std::error::Error + 'static, status: StatusCode) -> ApiError {
    if crate::routes::timed_out(&e) {
        crate::routes::too_slow()
    } else if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::invalid(Some("file"), "the upload is too large").with_status(status)
    } else {
        ApiError::invalid(None, format!("cannot read the multipart upload: {e}"))
            .with_status(status)
    }
}

pub(crate) async fn upload(
    State(s): State<Arc<AppState>>,
    form: Result<Multipart, MultipartRejection>,
) -> Result<Json<FileObject>, ApiError> {
    let store = store(&s)?;
    let mut form = form.map_err(|e| {
        let status = e.status();
        multipart_error(e, status)
    })?;
    let mut purpose = None;
    let mut file: Option<(String, Vec<u8>)> = None;
    while let Some(field) = form.next_field().await.map_err(|e| {
        let status = e.status();
        multipart_error(e, status)
    })? {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "purpose" => {
                purpose = Some(field.text().await.map_err(|e| {
                    let status = e.status();
                    multipart_error(e, status)
                })?)
            }
            "file" => {
                let filename = field.file_name().unwrap_or("upload.jsonl").to_string();
                let bytes = field.bytes().await.map_err(|e| {
                    let status = e.status();
                    multipart_error(e, status)
                })?;
                file = Some((filename, bytes.to_vec()));
            }
            _ => {}
        }
    }
    let purpose = purpose
        .ok_or_else(|| ApiError::invalid(Some("purpose"), "the form has no `purpose` field"))?;
    if !PURPOSES.contains(&purpose.as_str()) {
        return Err(ApiError::invalid(
            Some("purpose"),
            format!("purpose `{purpose}` is not one of {}", PURPOSES.join(", ")),
        ));
    }
    let (filename, bytes) =
        file.ok_or_else(|| ApiError::invalid(Some("file"), "the form has no `file` part"))?;
    if purpose == "fine-tune" {
        validate_jsonl(&bytes, FsPath::new(&filename))
            .map_err(|e| ApiError::invalid(Some("file"), e.to_string()))?;
    }
    let n = s.counter.fetch_add(1, Ordering::Relaxed);
    let created_at = now();
    let mut h = Sha256::new();
    h.update(&bytes);
    h.update(n.to_le_bytes());
    h.update(created_at.to_le_bytes());
    let id = format!("file-{}", &hex::encode(h.finalize())[..24]);
    let obj = FileObject {
        id: id.clone(),
        object: "file".into(),
        bytes: bytes.len() as u64,
        created_at,
        filename,
        purpose,
        status: Some("processed".into()),
    };
    write(&store.data_path(&id)?, &bytes)?;
    let record = serde_json::to_vec_pretty(&obj).map_err(|e| ApiError::internal(e.to_string()))?;
    write(&store.meta_path(&id)?, &record)?;
    Ok(Json(obj))
}

pub(crate) async fn list(State(s): State<Arc<AppState>>) -> Result<Json<FileList>, ApiError> {
    Ok(Json(FileList::new(store(&s)?.all()?)))
}

pub(crate) async fn retrieve(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<FileObject>, ApiError> {
    Ok(Json(store(&s)?.get(&id)?))
}

pub(crate) async fn content(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let st = store(&s)?;
    st.get(&id)?;
    let bytes = std::fs::read(st.data_path(&id)?).map_err(|_| no_file(&id))?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

pub(crate) async fn delete(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let st = store(&s)?;
    st.get(&id)?;
    for p in [st.data_path(&id)?, st.meta_path(&id)?] {
        std::fs::remove_file(&p)
            .map_err(|e| ApiError::internal(format!("cannot delete {}: {e}", p.display())))?;
    }
    Ok(Json(json!({"id": id, "object": "file", "deleted": true})))
}
