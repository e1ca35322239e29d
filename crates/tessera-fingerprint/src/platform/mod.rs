//! The live machine's sources, one module per platform with the same function names.
//!
//! `collect_raw(options)` gathers every candidate component, the environment, descriptive
//! system facts and the override file. Linux reads sysfs/procfs through [`crate::FsProbe`];
//! Windows asks WMI/CIM through PowerShell; macOS asks IOKit through `ioreg` and friends. The
//! parsers for the Windows and macOS outputs are compiled everywhere so their tests run on the
//! Linux CI; the code that runs the commands is compiled only on its platform.

pub mod macos_parse;
pub mod windows_parse;

#[cfg(not(any(windows, target_os = "macos")))]
#[path = "linux.rs"]
mod imp;
#[cfg(target_os = "macos")]
#[path = "macos.rs"]
mod imp;
#[cfg(windows)]
#[path = "windows.rs"]
mod imp;

pub(crate) use imp::collect_raw;
