//! No library code: this crate holds `tests/compose.rs`, which brings up the
//! real `docker-compose.yml` (three gateway replicas behind nginx) and
//! checks streaming, failover and recovery through the load balancer.
