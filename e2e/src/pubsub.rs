//! The Pub/Sub emulator through its REST API (it serves gRPC and REST on
//! one port): topics, subscriptions, publish, pull and acknowledge; and a
//! toxiproxy proxy in front of it that a test cuts to take the server away
//! from a processor without stopping the shared emulator.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::env::TestBed;

/// Errors talking to the emulator or toxiproxy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The test bed is not described.
    #[error(transparent)]
    Env(#[from] crate::env::Error),
    /// The HTTP request failed.
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    /// The server answered with an error.
    #[error("{method} {url}: {status}: {body}")]
    Status {
        /// The method.
        method: String,
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The response body.
        body: String,
    },
    /// A response did not have the expected shape.
    #[error("unexpected response: {0}")]
    Shape(String),
}

/// Result of the helpers.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One message as pulled.
#[derive(Clone, Debug)]
pub struct Pulled {
    /// The acknowledgement id.
    pub ack_id: String,
    /// The message id.
    pub message_id: String,
    /// The data, as UTF-8 (lossy).
    pub data: String,
    /// The attributes.
    pub attributes: BTreeMap<String, String>,
    /// The ordering key (empty when none).
    pub ordering_key: String,
}

/// The emulator of one project.
#[derive(Clone, Debug)]
pub struct Emulator {
    http: reqwest::Client,
    /// `host:port`.
    pub host: String,
    /// The project.
    pub project: String,
}

impl Emulator {
    /// The test bed's emulator (`PUBSUB_EMULATOR_HOST`, `PUBSUB_PROJECT_ID`).
    ///
    /// # Errors
    /// When the test bed is not described.
    pub fn from_bed(bed: &TestBed) -> Result<Self> {
        Ok(Self {
            http: reqwest::Client::new(),
            host: bed.var("PUBSUB_EMULATOR_HOST")?.to_owned(),
            project: bed.var("PUBSUB_PROJECT_ID")?.to_owned(),
        })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Result<Value> {
        let url = format!("http://{}/v1/projects/{}/{path}", self.host, self.project);
        let resp = self
            .http
            .request(method.clone(), &url)
            .json(&body)
            .send()
            .await?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            return Err(Error::Status {
                method: method.to_string(),
                url,
                status: status.as_u16(),
                body: text,
            });
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Creates a topic.
    ///
    /// # Errors
    /// When the emulator refuses.
    pub async fn create_topic(&self, name: &str) -> Result<()> {
        self.call(reqwest::Method::PUT, &format!("topics/{name}"), json!({}))
            .await?;
        Ok(())
    }

    /// Creates a subscription on `topic` with an ack deadline in seconds.
    ///
    /// # Errors
    /// When the emulator refuses.
    pub async fn create_subscription(
        &self,
        name: &str,
        topic: &str,
        ack_deadline: u32,
    ) -> Result<()> {
        let topic = format!("projects/{}/topics/{topic}", self.project);
        self.call(
            reqwest::Method::PUT,
            &format!("subscriptions/{name}"),
            json!({"topic": topic, "ackDeadlineSeconds": ack_deadline}),
        )
        .await?;
        Ok(())
    }

    /// Publishes messages (data, attributes); returns their ids.
    ///
    /// # Errors
    /// When the emulator refuses.
    pub async fn publish(
        &self,
        topic: &str,
        messages: &[(String, BTreeMap<String, String>)],
    ) -> Result<Vec<String>> {
        let messages: Vec<Value> = messages
            .iter()
            .map(|(data, attributes)| json!({"data": B64.encode(data), "attributes": attributes}))
            .collect();
        let out = self
            .call(
                reqwest::Method::POST,
                &format!("topics/{topic}:publish"),
                json!({"messages": messages}),
            )
            .await?;
        out["messageIds"]
            .as_array()
            .map(|ids| {
                ids.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .ok_or_else(|| Error::Shape(out.to_string()))
    }

    /// Pulls up to `max` messages (without waiting when there are none).
    ///
    /// # Errors
    /// When the emulator refuses or answers something else.
    pub async fn pull(&self, subscription: &str, max: u32) -> Result<Vec<Pulled>> {
        let out = self
            .call(
                reqwest::Method::POST,
                &format!("subscriptions/{subscription}:pull"),
                json!({"maxMessages": max, "returnImmediately": true}),
            )
            .await?;
        let Some(received) = out["receivedMessages"].as_array() else {
            return Ok(Vec::new());
        };
        received.iter().map(pulled).collect()
    }

    /// Acknowledges pulled messages.
    ///
    /// # Errors
    /// When the emulator refuses.
    pub async fn ack(&self, subscription: &str, ack_ids: &[String]) -> Result<()> {
        if ack_ids.is_empty() {
            return Ok(());
        }
        self.call(
            reqwest::Method::POST,
            &format!("subscriptions/{subscription}:acknowledge"),
            json!({"ackIds": ack_ids}),
        )
        .await?;
        Ok(())
    }

    /// Pulls and acknowledges whatever is there now.
    ///
    /// # Errors
    /// When the emulator refuses.
    pub async fn drain(&self, subscription: &str) -> Result<Vec<Pulled>> {
        let got = self.pull(subscription, 1000).await?;
        let ids: Vec<String> = got.iter().map(|p| p.ack_id.clone()).collect();
        self.ack(subscription, &ids).await?;
        Ok(got)
    }

    /// Deletes a subscription and a topic, ignoring errors (cleanup).
    pub async fn delete(&self, subscriptions: &[&str], topics: &[&str]) {
        for s in subscriptions {
            let _ = self
                .call(
                    reqwest::Method::DELETE,
                    &format!("subscriptions/{s}"),
                    Value::Null,
                )
                .await;
        }
        for t in topics {
            let _ = self
                .call(reqwest::Method::DELETE, &format!("topics/{t}"), Value::Null)
                .await;
        }
    }
}

fn pulled(m: &Value) -> Result<Pulled> {
    let shape = || Error::Shape(m.to_string());
    let msg = &m["message"];
    let data = msg["data"].as_str().unwrap_or_default();
    let data = B64.decode(data).map_err(|_| shape())?;
    Ok(Pulled {
        ack_id: m["ackId"].as_str().ok_or_else(shape)?.to_owned(),
        message_id: msg["messageId"].as_str().ok_or_else(shape)?.to_owned(),
        data: String::from_utf8_lossy(&data).into_owned(),
        attributes: msg["attributes"]
            .as_object()
            .map(|a| {
                a.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default(),
        ordering_key: msg["orderingKey"].as_str().unwrap_or_default().to_owned(),
    })
}

/// A toxiproxy proxy of its own in front of the emulator: disabled, it
/// refuses and drops every connection, as a server that is down.
#[derive(Debug)]
pub struct Proxy {
    url: String,
    /// `host:port` to connect to instead of the emulator.
    pub listen: String,
}

impl Proxy {
    /// Creates proxy `name` on a free port in front of `upstream`.
    ///
    /// # Errors
    /// When toxiproxy refuses.
    pub async fn create(bed: &TestBed, name: &str, upstream: &str) -> Result<Self> {
        let base = bed.var("TOXIPROXY_URL")?.to_owned();
        let resp = reqwest::Client::new()
            .post(format!("{base}/proxies"))
            .json(&json!({"name": name, "listen": "127.0.0.1:0", "upstream": upstream, "enabled": true}))
            .send()
            .await?;
        let status = resp.status();
        let body: Value = resp.json().await?;
        if !status.is_success() {
            return Err(Error::Shape(format!(
                "creating proxy {name}: {status} {body}"
            )));
        }
        let listen = body["listen"]
            .as_str()
            .ok_or_else(|| Error::Shape(body.to_string()))?;
        Ok(Self {
            url: format!("{base}/proxies/{name}"),
            listen: listen.to_owned(),
        })
    }

    /// Enables or disables the proxy and checks toxiproxy's state.
    ///
    /// # Errors
    /// When toxiproxy refuses or does not reach the state.
    pub async fn set_enabled(&self, enabled: bool) -> Result<()> {
        let http = reqwest::Client::new();
        let resp = http
            .post(&self.url)
            .json(&json!({"enabled": enabled}))
            .send()
            .await?;
        if !resp.status().is_success() {
            return Err(Error::Shape(format!(
                "POST {}: {}",
                self.url,
                resp.status()
            )));
        }
        let state: Value = http.get(&self.url).send().await?.json().await?;
        if state["enabled"] != enabled {
            return Err(Error::Shape(format!("{} is {state}", self.url)));
        }
        Ok(())
    }

    /// Removes the proxy.
    ///
    /// # Errors
    /// When toxiproxy refuses.
    pub async fn delete(self) -> Result<()> {
        reqwest::Client::new().delete(&self.url).send().await?;
        Ok(())
    }
}
