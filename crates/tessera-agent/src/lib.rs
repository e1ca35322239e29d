//! tessera-agent
pub mod db;
pub mod enforcement;
pub mod leases;
pub mod paths;
pub mod products;
pub mod secrets;
pub mod trusted_time;
