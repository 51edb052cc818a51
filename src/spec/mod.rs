//! Launch specs: repo2docker-compatible detection, `launch.toml`, environment key, Dockerfile.
pub const EXTRA_CA_FILE: &str = "nbforge-extra-ca.crt";
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub default_python: String,
    pub base_image: String,
    pub extra_ca: Option<Vec<u8>>,
}
