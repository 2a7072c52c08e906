use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use selfaware_backend::openai::{ErrorObject, ErrorResponse};
use selfaware_backend::BackendError;

/// Errors starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to access {path}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot serve the adapter in {path}")]
    Adapter {
        path: std::path::PathBuf,
        #[source]
        source: selfaware_model::ModelError,
    },
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Runtime(String),
}

/// An error answered to a client as OpenAI's error JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

impl ApiError {
    /// 400 `invalid_request_error`.
    pub fn invalid(param: Option<&str>, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            message: message.into(),
            param: param.map(str::to_string),
            code: None,
        }
    }

    pub fn not_found(message: impl Into<String>, code: &str) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            kind: "invalid_request_error",
            message: message.into(),
            param: None,
            code: Some(code.into()),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "server_error",
            message: message.into(),
            param: None,
            code: None,
        }
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn body(&self) -> ErrorResponse {
        ErrorResponse {
            error: ErrorObject {
                message: self.message.clone(),
                kind: self.kind.to_string(),
                param: self.param.clone(),
                code: self.code.clone(),
            },
        }
    }
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        use selfaware_model::ModelError;
        match e {
            BackendError::InvalidRequest { param, message } => {
                ApiError::invalid(param.as_deref(), message)
            }
            BackendError::Unsupported { .. } => ApiError::invalid(None, e.to_string()),
            // Input errors (context overflow, a conversation the template rejects) are the
            // client's; anything else in the model is ours.
            BackendError::Model(ModelError::Input(m)) => ApiError::invalid(Some("messages"), m),
            BackendError::Model(ModelError::Chat(c)) => {
                ApiError::invalid(Some("messages"), c.to_string())
            }
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}
