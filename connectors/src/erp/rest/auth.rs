//! Authentication of the generic REST connector. Static credentials (bearer, basic) are
//! one header; OAuth2 client credentials and session logins fetch a token or cookie once,
//! share it between applies and fetch a new one when it expires or the target answers 401.
//! Tokens, passwords and cookies never appear in logs or error messages.

use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, COOKIE, HeaderName, HeaderValue, SET_COOKIE};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::connector::ApplyError;
use crate::http::{classify_status, classify_transport};

/// How the target authenticates requests.
#[derive(Clone, PartialEq, Default)]
pub enum RestAuth {
    #[default]
    None,
    Bearer {
        token: String,
    },
    Basic {
        username: String,
        password: String,
    },
    OAuth2(OAuth2Settings),
    Session(SessionSettings),
}

impl std::fmt::Debug for RestAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestAuth::None => f.write_str("None"),
            RestAuth::Bearer { .. } => f.write_str("Bearer(<redacted>)"),
            RestAuth::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            RestAuth::OAuth2(o) => write!(f, "OAuth2({}, client {})", o.token_url, o.client_id),
            RestAuth::Session(s) => write!(f, "Session({})", s.login_path),
        }
    }
}

/// How the client id and secret reach the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// `client_id` and `client_secret` form fields (Microsoft Entra, most providers).
    #[default]
    Body,
    /// HTTP Basic (RFC 6749 §2.3.1).
    Basic,
}

/// OAuth2 client credentials grant (RFC 6749 §4.4).
#[derive(Clone, PartialEq)]
pub struct OAuth2Settings {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub scope: Option<String>,
    pub audience: Option<String>,
    pub client_auth: ClientAuth,
}

/// A login request whose answer authenticates later requests: a token read from the JSON
/// response (`token_pointer`), or the cookies it sets.
#[derive(Clone, PartialEq)]
pub struct SessionSettings {
    /// Absolute, or relative to the base URL.
    pub login_path: String,
    /// JSON body of the login POST; `{{username}}` and `{{password}}` are filled in.
    pub body: String,
    pub username: String,
    pub password: String,
    /// JSON pointer of the token in the login response (e.g. `/token`); without it the
    /// session cookie is used.
    pub token_pointer: Option<String>,
    /// Header that carries the token, and the text before it.
    pub header: String,
    pub prefix: String,
    /// Only this cookie of the login response (default: all of them).
    pub cookie: Option<String>,
    /// Log in again after this long even without a 401.
    pub lifetime: Option<Duration>,
}

struct Cached {
    name: HeaderName,
    value: HeaderValue,
    expires: Option<Instant>,
}

pub(super) struct Auth {
    settings: RestAuth,
    base_url: String,
    cache: Mutex<Option<Cached>>,
}

impl Auth {
    pub fn new(settings: RestAuth, base_url: &str) -> Auth {
        Auth {
            settings,
            base_url: base_url.to_owned(),
            cache: Mutex::new(None),
        }
    }

    /// Whether a 401 may be cured by fetching a new token or session.
    pub fn renewable(&self) -> bool {
        matches!(self.settings, RestAuth::OAuth2(_) | RestAuth::Session(_))
    }

    /// Forgets the token or session that got a 401, unless another apply already renewed it.
    pub async fn reject(&self, used: &HeaderValue) {
        let mut cache = self.cache.lock().await;
        if cache.as_ref().is_some_and(|c| c.value == *used) {
            *cache = None;
        }
    }

    /// The header to send, fetching a token or session when there is none or it expired.
    /// The lock makes concurrent applies wait for one login instead of each logging in.
    pub async fn header(
        &self,
        client: &reqwest::Client,
    ) -> Result<Option<(HeaderName, HeaderValue)>, ApplyError> {
        let (name, value) = match &self.settings {
            RestAuth::None => return Ok(None),
            RestAuth::Bearer { token } => (AUTHORIZATION, format!("Bearer {token}")),
            RestAuth::Basic { username, password } => (AUTHORIZATION, basic(username, password)),
            RestAuth::OAuth2(_) | RestAuth::Session(_) => {
                let mut cache = self.cache.lock().await;
                let fresh = cache
                    .as_ref()
                    .is_some_and(|c| c.expires.is_none_or(|at| Instant::now() < at));
                if !fresh {
                    *cache = Some(self.login(client).await?);
                }
                return Ok(cache.as_ref().map(|c| (c.name.clone(), c.value.clone())));
            }
        };
        Ok(Some((name, sensitive(&value)?)))
    }

    async fn login(&self, client: &reqwest::Client) -> Result<Cached, ApplyError> {
        match &self.settings {
            RestAuth::OAuth2(o) => oauth2(client, o).await,
            RestAuth::Session(s) => session(client, &self.base_url, s).await,
            _ => Err(ApplyError::permanent("no login for this auth type")),
        }
    }
}

fn basic(username: &str, password: &str) -> String {
    use base64::Engine as _;
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    format!("Basic {encoded}")
}

fn sensitive(value: &str) -> Result<HeaderValue, ApplyError> {
    let mut value = HeaderValue::from_str(value)
        .map_err(|_| ApplyError::permanent("credential is not a valid header value"))?;
    value.set_sensitive(true);
    Ok(value)
}

async fn oauth2(client: &reqwest::Client, o: &OAuth2Settings) -> Result<Cached, ApplyError> {
    let mut form = vec![("grant_type", "client_credentials")];
    if let Some(scope) = &o.scope {
        form.push(("scope", scope));
    }
    if let Some(audience) = &o.audience {
        form.push(("audience", audience));
    }
    let mut request = client.post(&o.token_url);
    match o.client_auth {
        ClientAuth::Body => {
            form.push(("client_id", &o.client_id));
            form.push(("client_secret", &o.client_secret));
        }
        ClientAuth::Basic => request = request.basic_auth(&o.client_id, Some(&o.client_secret)),
    }
    let response = request
        .form(&form)
        .send()
        .await
        .map_err(|e| prefixed("OAuth2 token request", classify_transport(&e)))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        // Token endpoints answer `{"error": "invalid_client", …}`: no secret in there.
        return Err(prefixed(
            "OAuth2 token request",
            classify_status(status, &headers, &body),
        ));
    }
    let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let Some(token) = json.get("access_token").and_then(Value::as_str) else {
        return Err(ApplyError::permanent(
            "OAuth2 token response has no access_token",
        ));
    };
    // Renew a little early, so a token does not expire between header and arrival.
    let expires = json.get("expires_in").and_then(Value::as_u64).map(|secs| {
        let margin = (secs / 10).min(60);
        Instant::now() + Duration::from_secs(secs - margin)
    });
    Ok(Cached {
        name: AUTHORIZATION,
        value: sensitive(&format!("Bearer {token}"))?,
        expires,
    })
}

async fn session(
    client: &reqwest::Client,
    base_url: &str,
    s: &SessionSettings,
) -> Result<Cached, ApplyError> {
    let url = if s.login_path.contains("://") {
        s.login_path.clone()
    } else {
        format!("{base_url}{}", s.login_path)
    };
    let mut body: Value = serde_json::from_str(&s.body)
        .map_err(|e| ApplyError::permanent(format!("login body is not JSON: {e}")))?;
    fill_credentials(&mut body, &s.username, &s.password);
    let response = client
        .post(&url)
        .json(&body)
        .send()
        .await
        .map_err(|e| prefixed("login", classify_transport(&e)))?;
    let status = response.status();
    let headers = response.headers().clone();
    if !status.is_success() {
        // The login answer may echo what was sent: report the status only.
        return Err(prefixed("login", classify_status(status, &headers, "")));
    }
    let expires = s.lifetime.map(|d| Instant::now() + d);
    if let Some(pointer) = &s.token_pointer {
        let json: Value = response.json().await.unwrap_or(Value::Null);
        let token = match json.pointer(pointer) {
            Some(Value::String(t)) => t.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                return Err(ApplyError::permanent(format!(
                    "login response has no token at {pointer}"
                )));
            }
        };
        let name = HeaderName::from_bytes(s.header.as_bytes())
            .map_err(|_| ApplyError::permanent("invalid session header name"))?;
        let value = sensitive(&format!("{}{token}", s.prefix))?;
        return Ok(Cached {
            name,
            value,
            expires,
        });
    }
    let cookies: Vec<&str> = headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(str::trim)
        .filter(|pair| match &s.cookie {
            Some(name) => pair.split_once('=').is_some_and(|(n, _)| n == name),
            None => true,
        })
        .collect();
    if cookies.is_empty() {
        return Err(ApplyError::permanent(
            "login response set no session cookie",
        ));
    }
    Ok(Cached {
        name: COOKIE,
        value: sensitive(&cookies.join("; "))?,
        expires,
    })
}

/// Fills `{{username}}` and `{{password}}` inside the JSON strings of the login body, so
/// a password with quotes stays valid JSON.
fn fill_credentials(value: &mut Value, username: &str, password: &str) {
    match value {
        Value::String(s) => {
            *s = s
                .replace("{{username}}", username)
                .replace("{{password}}", password);
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| fill_credentials(v, username, password)),
        Value::Object(map) => map
            .values_mut()
            .for_each(|v| fill_credentials(v, username, password)),
        _ => {}
    }
}

fn prefixed(what: &str, mut error: ApplyError) -> ApplyError {
    match &mut error {
        ApplyError::Retryable { message, .. }
        | ApplyError::Throttled { message, .. }
        | ApplyError::Permanent { message }
        | ApplyError::Gone { message } => message.insert_str(0, &format!("{what}: ")),
    }
    error
}
