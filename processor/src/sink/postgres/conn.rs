//! A blocking PostgreSQL connection: `tokio-postgres` on a current-thread
//! runtime owned by the connection (the engine threads are synchronous).

use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use tokio_postgres::{Client, NoTls, Row};

use super::table::{Column, table_ident};

/// Pause between reconnection attempts.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// A connection and the runtime that drives it.
pub struct Conn {
    rt: Runtime,
    url: String,
    client: Option<Client>,
}

impl Conn {
    /// Connects to `url` (a libpq connection string or URL; TLS is not
    /// built in, so `sslmode=require` servers are refused).
    ///
    /// # Errors
    /// When the runtime cannot start or the server refuses.
    pub fn connect(url: &str) -> Result<Self, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let mut conn = Self {
            rt,
            url: url.to_owned(),
            client: None,
        };
        conn.client()?;
        Ok(conn)
    }

    /// The client, reconnecting when the last one closed.
    ///
    /// # Errors
    /// When the server refuses the connection.
    pub fn client(&mut self) -> Result<&mut Client, String> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            let (client, connection) = self
                .rt
                .block_on(tokio_postgres::connect(&self.url, NoTls))
                .map_err(|e| describe(&e))?;
            self.rt.spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "postgres connection closed");
                }
            });
            self.client = Some(client);
        }
        self.client
            .as_mut()
            .ok_or_else(|| "no connection".to_owned())
    }

    /// Runs `f` with the client on this connection's runtime,
    /// connecting first when needed.
    ///
    /// # Errors
    /// When connecting fails, or `f` does.
    pub fn run<T>(
        &mut self,
        f: impl AsyncFnOnce(&mut Client) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, DbError> {
        self.client().map_err(|message| DbError {
            message,
            retryable: true,
            fenced: false,
        })?;
        let Self { rt, client, .. } = self;
        let Some(c) = client.as_mut() else {
            return Err(DbError {
                message: "no connection".into(),
                retryable: true,
                fenced: false,
            });
        };
        rt.block_on(f(c)).map_err(|e| DbError::from(&e))
    }

    /// Reconnects until the server answers or `patience` runs out.
    ///
    /// # Errors
    /// The last connection error.
    pub fn reconnect_within(&mut self, patience: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            match self.client() {
                Ok(_) => return Ok(()),
                Err(e) if start.elapsed() >= patience => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "postgres unreachable; retrying");
                    std::thread::sleep(RETRY_PAUSE);
                }
            }
        }
    }

    /// The columns of `table` from the catalog (`schema.table` or a name
    /// on the search path).
    ///
    /// # Errors
    /// When the table does not exist or the query fails.
    pub fn columns(&mut self, table: &str) -> Result<Vec<Column>, String> {
        const SQL: &str = "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), t.typname::text, t.typcategory::text \
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
             WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum";
        let name = table_ident(table);
        let rows: Vec<Row> = self
            .run(async |c| c.query(SQL, &[&name]).await)
            .map_err(|e| e.message)?;
        Ok(rows
            .iter()
            .map(|r| Column {
                name: r.get(0),
                sql_type: r.get(1),
                type_name: r.get(2),
                category: r.get::<_, String>(3).chars().next().unwrap_or('X'),
            })
            .collect())
    }
}

/// A failed database call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbError {
    /// The server's message with its SQLSTATE, or the client's.
    pub message: String,
    /// About the connection (a retry on a new one can help) rather than
    /// the data or the SQL.
    pub retryable: bool,
    /// A stored source position was not what this writer expected: another
    /// writer (or an earlier commit of this one) moved it; rolled back.
    pub fenced: bool,
}

impl From<&tokio_postgres::Error> for DbError {
    fn from(e: &tokio_postgres::Error) -> Self {
        Self {
            message: describe(e),
            retryable: is_connection_error(e),
            fenced: false,
        }
    }
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The server's message with its SQLSTATE and detail when it sent one.
#[must_use]
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} ({})", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                s.push_str(": ");
                s.push_str(d);
            }
            s
        }
        None => match std::error::Error::source(e) {
            Some(src) => format!("{e}: {src}"),
            None => e.to_string(),
        },
    }
}

/// Whether an error is about the connection (retry on a new one) rather
/// than the data or the SQL.
#[must_use]
pub fn is_connection_error(e: &tokio_postgres::Error) -> bool {
    e.is_closed()
        || e.as_db_error().is_none_or(|db| {
            let class = &db.code().code()[..2];
            // 08 connection exception, 57 operator intervention (shutdown),
            // 53 insufficient resources.
            matches!(class, "08" | "57" | "53")
        })
}
