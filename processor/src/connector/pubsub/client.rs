//! Where a Pub/Sub connector connects and with which credentials.

use google_cloud_auth::credentials::Credentials;

use super::PubSubError;

/// The variable emulators and Google's client libraries agree on.
pub const EMULATOR_ENV: &str = "PUBSUB_EMULATOR_HOST";

/// Where to connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// An emulator: plaintext gRPC, anonymous credentials (`http://host:port`).
    Emulator(String),
    /// Google: TLS with Application Default Credentials, at the default
    /// endpoint or an override (`https://...`, e.g. a regional or private one).
    Google(Option<String>),
}

impl Endpoint {
    /// The endpoint for a spec's `endpoint` field and the value of
    /// `PUBSUB_EMULATOR_HOST`: the field wins; `https://` is Google, anything
    /// else (`host:port`, `http://`) an emulator.
    #[must_use]
    pub fn resolve(field: Option<&str>, emulator_env: Option<&str>) -> Self {
        let given = field
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .or_else(|| emulator_env.map(str::trim).filter(|s| !s.is_empty()));
        match given {
            None => Self::Google(None),
            Some(e) if e.starts_with("https://") => Self::Google(Some(e.to_owned())),
            Some(e) if e.starts_with("http://") => Self::Emulator(e.to_owned()),
            Some(e) => Self::Emulator(format!("http://{e}")),
        }
    }

    /// The endpoint of a spec, reading `PUBSUB_EMULATOR_HOST`.
    #[must_use]
    pub fn from_spec(field: Option<&str>) -> Self {
        Self::resolve(field, std::env::var(EMULATOR_ENV).ok().as_deref())
    }

    /// The URL to set on a client builder (`None`: the library's default)
    /// and the credentials to set (`None`: Application Default Credentials).
    #[must_use]
    pub fn settings(&self) -> (Option<String>, Option<Credentials>) {
        match self {
            Self::Emulator(url) => (
                Some(url.clone()),
                Some(google_cloud_auth::credentials::anonymous::Builder::new().build()),
            ),
            Self::Google(url) => (url.clone(), None),
        }
    }
}

/// `projects/{project}/subscriptions/{name}`.
#[must_use]
pub fn subscription_path(project: &str, name: &str) -> String {
    format!("projects/{project}/subscriptions/{name}")
}

/// `projects/{project}/topics/{name}`.
#[must_use]
pub fn topic_path(project: &str, name: &str) -> String {
    format!("projects/{project}/topics/{name}")
}

/// The runtime a connector's client runs on. One worker thread drives the
/// gRPC connection and the lease or publish loops even while the thread
/// that owns the connector blocks (on the engine's queue, in a flush).
///
/// # Errors
/// [`PubSubError::Runtime`] when the thread cannot start.
pub fn runtime(name: &str) -> Result<tokio::runtime::Runtime, PubSubError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(PubSubError::Runtime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_field_wins_over_the_environment_and_the_scheme_decides_the_mode() {
        let emu = |s: &str| Endpoint::Emulator(s.to_owned());
        assert_eq!(Endpoint::resolve(None, None), Endpoint::Google(None));
        assert_eq!(
            Endpoint::resolve(None, Some("127.0.0.1:8085")),
            emu("http://127.0.0.1:8085")
        );
        assert_eq!(
            Endpoint::resolve(Some("localhost:9000"), Some("127.0.0.1:8085")),
            emu("http://localhost:9000")
        );
        assert_eq!(
            Endpoint::resolve(Some("http://e:1"), None),
            emu("http://e:1")
        );
        assert_eq!(
            Endpoint::resolve(
                Some("https://europe-west1-pubsub.googleapis.com"),
                Some("x:1")
            ),
            Endpoint::Google(Some("https://europe-west1-pubsub.googleapis.com".into()))
        );
        assert_eq!(
            Endpoint::resolve(Some(" "), Some("")),
            Endpoint::Google(None)
        );
    }

    #[test]
    fn an_emulator_gets_anonymous_credentials_and_google_the_default_ones() {
        let (url, creds) = Endpoint::Emulator("http://h:1".into()).settings();
        assert_eq!(url.as_deref(), Some("http://h:1"));
        assert!(creds.is_some());
        let (url, creds) = Endpoint::Google(None).settings();
        assert!(url.is_none() && creds.is_none());
    }
}
