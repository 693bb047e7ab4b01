//! Locations as `object_store` URLs: plain paths, `file://`, `s3://`, `gs://`, `az://` /
//! `abfs://`, `http(s)://`. Cloud stores are configured from the usual environment
//! variables (`AWS_*`, `GOOGLE_*`, `AZURE_*`), and registered with the session so DataFusion's
//! own readers and writers see the same stores.

use std::sync::Arc;

use datafusion::prelude::SessionContext;
use object_store::ObjectStore;
use object_store::path::Path;
use url::Url;

use crate::{Error, Result};

/// A parsed location.
#[derive(Debug, Clone)]
pub struct Location {
    /// The full URL of the object (or directory).
    pub url: Url,
    /// The path inside its store.
    pub path: Path,
    /// What the user wrote, for messages.
    pub display: String,
}

impl Location {
    /// Parses a plain path (relative to the working directory) or a URL.
    pub fn parse(s: &str) -> Result<Location> {
        let url = match Url::parse(s) {
            Ok(u) if u.scheme().len() > 1 => u,
            // Not a URL (or a Windows drive letter): a local path.
            _ => {
                let p = std::path::Path::new(s);
                let abs = if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    std::env::current_dir()
                        .map_err(|e| Error::external("reading the working directory", e))?
                        .join(p)
                };
                let mut u = Url::from_file_path(&abs)
                    .map_err(|_| Error::config(s, "not a valid file path"))?;
                if s.ends_with('/') && !u.path().ends_with('/') {
                    u.set_path(&format!("{}/", u.path()));
                }
                u
            }
        };
        let path = Path::from_url_path(url.path())
            .map_err(|e| Error::config(s, format!("not a valid object path: {e}")))?;
        Ok(Location {
            url,
            path,
            display: s.to_string(),
        })
    }

    /// The URL of the store holding this location: `scheme://host/`.
    pub fn store_url(&self) -> Url {
        let mut u = self.url.clone();
        u.set_path("/");
        u.set_query(None);
        u.set_fragment(None);
        u
    }

    /// The object's file name (last path segment).
    pub fn file_name(&self) -> &str {
        self.path.filename().unwrap_or("")
    }
}

/// Builds (or reuses) the store for `loc` and registers it with `ctx`.
pub fn register(ctx: &SessionContext, loc: &Location) -> Result<Arc<dyn ObjectStore>> {
    let base = loc.store_url();
    if let Ok(store) =
        ctx.runtime_env()
            .object_store(datafusion::execution::object_store::ObjectStoreUrl::parse(
                base.as_str(),
            )?)
        && loc.url.scheme() != "file"
    {
        return Ok(store);
    }
    let store = store_for(loc)?;
    ctx.register_object_store(&base, store.clone());
    Ok(store)
}

/// Builds the store holding `loc` (credentials from the environment).
pub fn store_for(loc: &Location) -> Result<Arc<dyn ObjectStore>> {
    let base = loc.store_url();
    let host = loc.url.host_str().unwrap_or_default();
    let store: Arc<dyn ObjectStore> = match loc.url.scheme() {
        "file" => Arc::new(object_store::local::LocalFileSystem::new()),
        "s3" | "s3a" => Arc::new(
            object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(host)
                .build()
                .map_err(|e| Error::external(format!("configuring {}", loc.display), e))?,
        ),
        "gs" => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(host)
                .build()
                .map_err(|e| Error::external(format!("configuring {}", loc.display), e))?,
        ),
        "az" | "adl" | "azure" | "abfs" | "abfss" => Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(loc.url.as_str())
                .build()
                .map_err(|e| Error::external(format!("configuring {}", loc.display), e))?,
        ),
        "http" | "https" => Arc::new(
            object_store::http::HttpBuilder::new()
                .with_url(base.as_str())
                .build()
                .map_err(|e| Error::external(format!("configuring {}", loc.display), e))?,
        ),
        other => {
            return Err(Error::config(
                &loc.display,
                format!(
                    "unsupported URL scheme \"{other}\" (use a path, file://, s3://, gs://, az://, abfs:// or http(s)://)"
                ),
            ));
        }
    };
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_become_file_urls() {
        let l = Location::parse("/tmp/x/orders.jsonl").unwrap();
        assert_eq!(l.url.as_str(), "file:///tmp/x/orders.jsonl");
        assert_eq!(l.file_name(), "orders.jsonl");
        assert_eq!(l.store_url().as_str(), "file:///");
        let l = Location::parse("s3://bucket/a/b.parquet").unwrap();
        assert_eq!(l.store_url().as_str(), "s3://bucket/");
        assert_eq!(l.path.as_ref(), "a/b.parquet");
    }

    #[test]
    fn unknown_schemes_are_rejected() {
        let ctx = SessionContext::new();
        let e = register(&ctx, &Location::parse("ftp://host/x.csv").unwrap()).unwrap_err();
        assert!(
            e.to_string().contains("unsupported URL scheme \"ftp\""),
            "{e}"
        );
    }
}
