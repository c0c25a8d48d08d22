//! What the tests that talk to moto share: an AWS SDK config pointed at the
//! test bed's moto server with its dummy credentials.

use anyhow::Result;
use aws_sdk_cloudwatch::config::{Credentials, Region};
use tributary_e2e::env::TestBed;

/// AWS config pointed at moto with the test bed's dummy credentials.
pub async fn config(bed: &TestBed) -> Result<aws_config::SdkConfig> {
    Ok(aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(bed.var("AWS_ENDPOINT_URL")?)
        .region(Region::new(bed.var("AWS_REGION")?.to_owned()))
        .credentials_provider(Credentials::new(
            bed.var("AWS_ACCESS_KEY_ID")?,
            bed.var("AWS_SECRET_ACCESS_KEY")?,
            None,
            None,
            "testbed",
        ))
        .load()
        .await)
}
