//! A Redis connection that reconnects on the next call after a failure.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Cmd};

/// A connection that reconnects on the next call after a failure.
pub struct Conn {
    client: Client,
    conn: Option<MultiplexedConnection>,
}

impl Conn {
    /// A connection to `url`, opened at the first call.
    ///
    /// # Errors
    /// When the URL does not parse.
    pub fn new(url: &str) -> redis::RedisResult<Self> {
        Ok(Self {
            client: Client::open(url)?,
            conn: None,
        })
    }

    /// The open connection, or a new one.
    async fn connection(&mut self) -> redis::RedisResult<&mut MultiplexedConnection> {
        if self.conn.is_none() {
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(5)))
                .set_response_timeout(Some(Duration::from_secs(10)));
            let c = self
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            self.conn = Some(c);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| redis::RedisError::from((redis::ErrorKind::Io, "no connection")))
    }

    /// Runs `cmd`; a connection failure drops the connection so the next
    /// call reconnects.
    ///
    /// # Errors
    /// What Redis or the connection reports.
    pub async fn query<T: redis::FromRedisValue>(&mut self, cmd: &Cmd) -> redis::RedisResult<T> {
        let result = cmd.query_async(self.connection().await?).await;
        if let Err(e) = &result
            && (e.is_io_error()
                || e.is_connection_dropped()
                || e.is_timeout()
                || e.is_unrecoverable_error())
        {
            self.conn = None;
        }
        result
    }

    /// Runs a pipeline; a failure drops the connection.
    ///
    /// # Errors
    /// What Redis or the connection reports.
    pub async fn pipe(&mut self, pipe: &redis::Pipeline) -> redis::RedisResult<()> {
        let result = pipe.query_async::<()>(self.connection().await?).await;
        if result.is_err() {
            self.conn = None;
        }
        result
    }
}
