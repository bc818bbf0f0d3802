// daxfsctl: the admin and test CLI (see shared INTERFACE.md "daxfsctl commands").
#include <CLI/CLI.hpp>

#include "fs/cmd/cli_util.h"
#include "fs/cmd/ctl_commands.h"

namespace {
// Every option that takes a value (positionals too) refuses an empty one: `--offset ''` is an
// error, never the default.
void refuse_empty_values(CLI::App& app) {
  CLI::Validator non_empty([](std::string& value) { return value.empty() ? std::string("an empty value") : ""; },
                           "", "NONEMPTY");
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; }))
    for (CLI::Option* opt : sub->get_options())
      if (opt->get_type_size_min() > 0 && opt->get_name() != "--help") opt->check(non_empty);
}
}  // namespace

int main(int argc, char** argv) {
  daxfs::cli::set_program_name("daxfsctl");
  CLI::App app{"daxfsctl: administer and test daxfs filesystems and emulated pmem devices"};
  app.require_subcommand(1);
  int status = 0;
  daxfs::cli::register_poison_commands(app, status);
  daxfs::cli::register_fs_commands(app, status);
  daxfs::cli::register_reflink_commands(app, status);
  daxfs::cli::register_dax_commands(app, status);
  refuse_empty_values(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() != 0) {
      std::string name = app.get_subcommands().empty() ? "" : app.get_subcommands()[0]->get_name();
      daxfs::cli::print_error(name, e.what());
      return 2;
    }
    return app.exit(e);
  }
  return status;
}
