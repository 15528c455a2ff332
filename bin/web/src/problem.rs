//! `application/problem+json` bodies (RFC 9457) and the one place that turns
//! errors into HTTP statuses: each use case's error has its `From` into
//! [`ApiError`] here, so the whole status table reads in this file and the
//! handlers end in `?`. The wording users read is here too (the use cases'
//! errors describe themselves in English, for logs). Internals never reach a body: server faults are
//! logged with the request id and answered with a generic detail.

use anb_application::{
    AuthError, DeleteError, FieldError, LogInError, PublicQueryError, ResendError, SignUpError, UploadError, VerifyError, VideoAccessError,
    VoteError,
};
use anb_domain::{BackendError, BackendErrorKind, UploadRejection};
use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use poem_openapi::payload::Payload;
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::{ToJSON, Type};
use poem_openapi::{ApiResponse, Object};

/// One invalid field of a request.
#[derive(Debug, Clone, Object)]
pub struct FieldProblem {
    pub field: String,
    pub message: String,
}

/// A problem details body.
#[derive(Debug, Clone, Object)]
pub struct ProblemBody {
    /// Always `about:blank`: the status says what kind of problem it is.
    #[oai(rename = "type")]
    pub kind: String,
    /// The status's reason phrase.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong, for the user (Spanish).
    pub detail: String,
    /// The fields that failed validation, when that is the problem.
    #[oai(skip_serializing_if_is_none)]
    pub errors: Option<Vec<FieldProblem>>,
}

/// A problem details payload.
#[derive(Debug, Clone)]
pub struct Problem(pub ProblemBody);

impl Problem {
    /// A problem with this status and detail.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self(ProblemBody {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: None,
        })
    }

    /// A 400 listing invalid fields; the detail is the first one's message.
    pub fn invalid_fields(errors: &[FieldError]) -> Self {
        let detail = errors.first().map_or_else(|| "Solicitud inválida.".to_owned(), |e| e.message.clone());
        let mut problem = Self::new(StatusCode::BAD_REQUEST, detail);
        problem.0.errors = Some(errors.iter().map(|e| FieldProblem { field: e.field.into(), message: e.message.clone() }).collect());
        problem
    }

    /// This problem as an error that ends request parsing early.
    pub fn into_error(self) -> poem::Error {
        poem::Error::from_response(self.into_response())
    }

    /// The status this problem carries.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl Payload for Problem {
    const CONTENT_TYPE: &'static str = "application/problem+json";

    fn schema_ref() -> MetaSchemaRef {
        ProblemBody::schema_ref()
    }

    fn register(registry: &mut Registry) {
        ProblemBody::register(registry);
    }
}

/// Seconds a client is asked to wait after a 503 (`Retry-After`): a
/// database failover or a restart is over in about this time or a few of it.
pub const RETRY_UNAVAILABLE_AFTER: u64 = 5;

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = self.0.to_json().map(|v| v.to_string()).unwrap_or_default();
        let status = self.status();
        let mut response = Response::builder().status(status).content_type(Self::CONTENT_TYPE);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // Every 503 says when to try again, however it was made.
            response = response.header(poem::http::header::RETRY_AFTER, RETRY_UNAVAILABLE_AFTER);
        }
        response.body(body)
    }
}

/// Every error answer of the API. Each operation lists them all in the spec.
#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// The request is invalid; `detail` says why.
    #[oai(status = 400)]
    BadRequest(Problem),
    /// Missing, malformed, expired or forged token, or bad credentials.
    #[oai(status = 401)]
    Unauthorized(Problem),
    /// The resource belongs to someone else, or a link is not valid.
    #[oai(status = 403)]
    Forbidden(Problem),
    /// No such resource.
    #[oai(status = 404)]
    NotFound(Problem),
    /// The client stopped sending its request body.
    #[oai(status = 408)]
    RequestTimeout(Problem),
    /// The request body is over the limit.
    #[oai(status = 413)]
    PayloadTooLarge(Problem),
    /// The body is not of the documented content type.
    #[oai(status = 415)]
    UnsupportedMediaType(Problem),
    /// Too many failed log-ins for this account or from this address, too
    /// many sign-ups from this address or network, or too many requests for
    /// a verification link; try again after `Retry-After` seconds.
    #[oai(status = 429)]
    TooManyRequests(Problem, #[oai(header = "Retry-After")] u64),
    /// Unexpected server fault; see the log under the `x-request-id`.
    #[oai(status = 500)]
    Internal(Problem),
    /// The database or another backend is unreachable (a failover, say), or
    /// the request took too long; try again after `Retry-After` seconds.
    #[oai(status = 503)]
    Unavailable(Problem, #[oai(header = "Retry-After")] u64),
    /// No space left to store the upload.
    #[oai(status = 507)]
    InsufficientStorage(Problem),
}

impl ApiError {
    /// An error answer with this status and detail.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self::from(Problem::new(status, detail))
    }

    /// A 429 telling the client to wait `retry_after`, and why.
    pub fn too_many_requests(detail: impl Into<String>, retry_after: std::time::Duration) -> Self {
        // Whole seconds, rounded up, so a client that waits is let in.
        let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        Self::TooManyRequests(Problem::new(StatusCode::TOO_MANY_REQUESTS, detail), seconds)
    }

    /// A 400.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// This answer as an error that ends request parsing early.
    pub fn into_poem_error(self) -> poem::Error {
        poem::Error::from_response(self.into_response())
    }
}

impl From<Problem> for ApiError {
    fn from(problem: Problem) -> Self {
        match problem.status() {
            StatusCode::BAD_REQUEST => Self::BadRequest(problem),
            StatusCode::UNAUTHORIZED => Self::Unauthorized(problem),
            StatusCode::FORBIDDEN => Self::Forbidden(problem),
            StatusCode::NOT_FOUND => Self::NotFound(problem),
            StatusCode::REQUEST_TIMEOUT => Self::RequestTimeout(problem),
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge(problem),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType(problem),
            StatusCode::SERVICE_UNAVAILABLE => Self::Unavailable(problem, RETRY_UNAVAILABLE_AFTER),
            StatusCode::INSUFFICIENT_STORAGE => Self::InsufficientStorage(problem),
            _ => Self::Internal(problem),
        }
    }
}

/// The answer to a request without a valid access token.
const UNAUTHENTICATED: &str = "No autenticado: falta el token o no es válido.";
const NO_SUCH_VIDEO: &str = "El video no existe.";
const ANOTHER_USERS_VIDEO: &str = "El video pertenece a otro usuario.";

impl From<BackendError> for ApiError {
    fn from(error: BackendError) -> Self {
        Self::from(Problem::from(error))
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Unauthenticated => Self::new(StatusCode::UNAUTHORIZED, UNAUTHENTICATED),
            AuthError::Backend(e) => e.into(),
        }
    }
}

impl From<SignUpError> for ApiError {
    fn from(error: SignUpError) -> Self {
        match error {
            SignUpError::Invalid(errors) => Problem::invalid_fields(&errors).into(),
            SignUpError::EmailTaken => Self::bad_request("El correo electrónico ya está registrado."),
            SignUpError::Throttled { retry_after } => {
                Self::too_many_requests("Se crearon demasiadas cuentas desde tu red. Inténtalo de nuevo más tarde.", retry_after)
            }
            SignUpError::Backend(e) => e.into(),
        }
    }
}

impl From<VerifyError> for ApiError {
    fn from(error: VerifyError) -> Self {
        match error {
            VerifyError::Invalid => Self::bad_request("El enlace de verificación no es válido."),
            VerifyError::Used => Self::bad_request("El enlace de verificación ya fue usado."),
            VerifyError::Expired => Self::bad_request("El enlace de verificación expiró. Pide uno nuevo desde tu cuenta."),
            VerifyError::Backend(e) => e.into(),
        }
    }
}

impl From<ResendError> for ApiError {
    fn from(error: ResendError) -> Self {
        match error {
            ResendError::Throttled { retry_after } => {
                Self::too_many_requests("Ya pediste varios enlaces. Inténtalo de nuevo más tarde.", retry_after)
            }
            ResendError::Backend(e) => e.into(),
        }
    }
}

impl From<LogInError> for ApiError {
    fn from(error: LogInError) -> Self {
        match error {
            LogInError::InvalidCredentials => Self::new(StatusCode::UNAUTHORIZED, "Correo o contraseña incorrectos."),
            LogInError::Locked { retry_after } => {
                Self::too_many_requests("Demasiados intentos fallidos. Inténtalo de nuevo más tarde.", retry_after)
            }
            LogInError::Backend(e) => e.into(),
        }
    }
}

impl From<UploadError> for ApiError {
    fn from(error: UploadError) -> Self {
        match error {
            UploadError::Rejected(UploadRejection::TooLarge { .. }) => Self::new(StatusCode::PAYLOAD_TOO_LARGE, error.to_string()),
            UploadError::Rejected(_) | UploadError::InvalidTitle(_) => Self::bad_request(error.to_string()),
            UploadError::Backend(e) => e.into(),
        }
    }
}

impl From<VideoAccessError> for ApiError {
    fn from(error: VideoAccessError) -> Self {
        match error {
            VideoAccessError::NotFound => Self::new(StatusCode::NOT_FOUND, NO_SUCH_VIDEO),
            VideoAccessError::Forbidden => Self::new(StatusCode::FORBIDDEN, ANOTHER_USERS_VIDEO),
            VideoAccessError::Backend(e) => e.into(),
        }
    }
}

impl From<DeleteError> for ApiError {
    fn from(error: DeleteError) -> Self {
        match error {
            DeleteError::AlreadyPublic => Self::bad_request("El video ya es público y no puede eliminarse."),
            DeleteError::NotFound => Self::new(StatusCode::NOT_FOUND, NO_SUCH_VIDEO),
            DeleteError::Forbidden => Self::new(StatusCode::FORBIDDEN, ANOTHER_USERS_VIDEO),
            DeleteError::Backend(e) => e.into(),
        }
    }
}

impl From<VoteError> for ApiError {
    fn from(error: VoteError) -> Self {
        match error {
            VoteError::AlreadyVoted => Self::bad_request("Ya has votado por este video."),
            VoteError::OwnVideo => Self::bad_request("No puedes votar por tu propio video."),
            VoteError::Unverified => Self::new(StatusCode::FORBIDDEN, "Verifica tu correo electrónico para votar."),
            VoteError::NotFound => Self::new(StatusCode::NOT_FOUND, "El video no existe o no es público."),
            VoteError::Backend(e) => e.into(),
        }
    }
}

impl From<PublicQueryError> for ApiError {
    fn from(error: PublicQueryError) -> Self {
        match error {
            PublicQueryError::InvalidParameter(detail) => Self::bad_request(detail),
            PublicQueryError::Backend(e) => e.into(),
        }
    }
}

/// The problem answering a backend failure; the failure itself is logged.
impl From<BackendError> for Problem {
    fn from(error: BackendError) -> Self {
        match error.kind {
            BackendErrorKind::Unavailable => {
                tracing::warn!(%error, "backend unavailable");
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "El servicio no está disponible en este momento. Inténtalo de nuevo.")
            }
            BackendErrorKind::StorageFull => {
                tracing::error!(%error, "storage full");
                Problem::new(StatusCode::INSUFFICIENT_STORAGE, "No hay espacio para almacenar el archivo.")
            }
            BackendErrorKind::Internal => {
                tracing::error!(%error, "internal error");
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "Error interno del servidor.")
            }
        }
    }
}

/// A request parameter as a message names it: in Spanish, with the name a
/// program sends in parentheses.
fn spanish_name(name: &str) -> String {
    match name {
        "limit" => "El límite (limit)".to_owned(),
        "offset" => "El desplazamiento (offset)".to_owned(),
        "city" => "La ciudad (city)".to_owned(),
        "video_id" => "El identificador del video (video_id)".to_owned(),
        "token" => "El enlace de verificación (token)".to_owned(),
        other => format!("El parámetro «{other}»"),
    }
}

/// Turns any error that escaped the handlers (no route, wrong method, bad
/// parameters, missing token) into a problem response. `path_param` names
/// the route's path parameters by position (poem-openapi calls them
/// `param0`, `param1`, ... internally).
pub fn problem_for<'a>(error: poem::Error, path_param: impl Fn(usize) -> Option<&'a str>) -> Response {
    if error.is_from_response() {
        return error.into_response();
    }
    let status = error.status();
    // poem-openapi's own request errors, in the API's language.
    if let Some(e) = error.downcast_ref::<poem_openapi::error::ParseParamError>() {
        return Problem::new(StatusCode::BAD_REQUEST, format!("{} no es válido.", spanish_name(e.name))).into_response();
    }
    if let Some(e) = error.downcast_ref::<poem_openapi::error::ParsePathError>() {
        let name = e.name.strip_prefix("param").and_then(|n| n.parse().ok()).and_then(&path_param).unwrap_or(e.name);
        return Problem::new(StatusCode::BAD_REQUEST, format!("{} de la ruta no es válido.", spanish_name(name))).into_response();
    }
    if error.is::<poem_openapi::error::ParseRequestPayloadError>() {
        let detail = "El cuerpo de la solicitud no es un JSON válido con los campos requeridos.";
        return Problem::new(StatusCode::BAD_REQUEST, detail).into_response();
    }
    if error.is::<poem_openapi::error::ContentTypeError>() {
        return Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Tipo de contenido no admitido: se espera application/json.")
            .into_response();
    }
    let detail = match status {
        StatusCode::NOT_FOUND => "Recurso no encontrado.".to_owned(),
        StatusCode::METHOD_NOT_ALLOWED => "Método no permitido.".to_owned(),
        StatusCode::UNAUTHORIZED => UNAUTHENTICATED.to_owned(),
        StatusCode::PAYLOAD_TOO_LARGE => "El cuerpo de la solicitud supera el tamaño permitido.".to_owned(),
        s if s.is_server_error() => {
            tracing::error!(%error, "unhandled server error");
            "Error interno del servidor.".to_owned()
        }
        _ => error.to_string(),
    };
    Problem::new(status, detail).into_response()
}
