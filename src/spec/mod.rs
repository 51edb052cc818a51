//! Launch specs: repo2docker-compatible detection, `launch.toml`, environment key, Dockerfile.
