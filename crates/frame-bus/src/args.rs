//! The bus-key flags every service takes, declared once. Each binary keeps
//! its own variable names (`GATEWAY_BUS_KEY_FILE`, `DETECTOR_BUS_KEY`, …),
//! so the declaration is a macro that a config flattens:
//!
//! ```ignore
//! frame_bus::bus_key_args!(BusKeyArgs, "DETECTOR");
//! // in the clap Config: #[command(flatten)] pub bus: BusKeyArgs,
//! ```
//!
//! [`load`](BusKeys::load) then reads the key the same way everywhere,
//! and warns once when a key was given on the command line, where every
//! user of the host can read it.

/// Declares `pub struct $name` with `--bus-key-file` and `--bus-key`
/// (variables `$prefix_BUS_KEY_FILE` and `$prefix_BUS_KEY`) and its
/// `load()`, for a clap config to flatten.
// rustfmt re-indents attributes inside macro_rules! on every run.
#[rustfmt::skip]
#[macro_export]
macro_rules! bus_key_args {
    ($name:ident, $prefix:literal) => {
        /// The bus key: `--bus-key-file` or `--bus-key`.
        #[derive(clap::Args, Debug, Clone, Default)]
        pub struct $name {
            /// File holding the bus key (hex, one key per line, at most
            /// two per scope: the first signs, all are accepted; re-read
            /// every second, so keys rotate without restarts). With a key
            /// every message is signed and checked, and subscribers prove
            /// the key to publishers.
            #[arg(
                long,
                env = concat!($prefix, "_BUS_KEY_FILE"),
                value_parser = $crate::parse_key_file
            )]
            pub bus_key_file: Option<std::path::PathBuf>,
            /// The bus key itself (hex). Prefer the file or the variable:
            /// a command line is visible to every user in the process list.
            #[arg(
                long,
                env = concat!($prefix, "_BUS_KEY"),
                hide_env_values = true,
                conflicts_with = "bus_key_file"
            )]
            pub bus_key: Option<String>,
        }

        impl $name {
            /// The key ring these flags name (off when neither is given).
            pub fn load(&self) -> Result<$crate::BusKeys, $crate::KeyError> {
                $crate::keys::warn_if_on_command_line(
                    concat!($prefix, "_BUS_KEY_FILE"),
                    concat!($prefix, "_BUS_KEY"),
                );
                $crate::BusKeys::load(self.bus_key_file.as_deref(), self.bus_key.as_deref())
            }
        }
    };
}
