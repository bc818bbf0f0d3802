// daxfsctl subcommand registration. Each register_* adds its subcommands to `app`; a subcommand's
// callback stores the process exit status in `status`.
#pragma once

#include <CLI/CLI.hpp>

namespace daxfs::cli {

void register_poison_commands(CLI::App& app, int& status);
void register_fs_commands(CLI::App& app, int& status);
void register_reflink_commands(CLI::App& app, int& status);
void register_dax_commands(CLI::App& app, int& status);  // run, mappers (ctl_dax.cc)

}  // namespace daxfs::cli
