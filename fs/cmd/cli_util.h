// Helpers shared by the command-line programs: size parsing and printing, one-line errors,
// and resolving a MOUNTPOINT|DEVICE argument to the device file. Not thread-safe (CLI use).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/result.h"

namespace daxfs::cli {

// Parses "4096", "8K", "4M", "1G", "2T" (powers of 1024, case-insensitive, optional "iB"/"B")
// and "0x1000". nullopt on junk, a negative number or overflow.
std::optional<uint64_t> parse_size(const std::string& text);
// The shortest exact spelling: 9663676416 -> "9G", 12288 -> "12K", 4097 -> "4097".
std::string format_size(uint64_t bytes);

// Prints "PROGRAM: CONTEXT: MESSAGE" to stderr (one line).
void print_error(const std::string& context, const std::string& message);
void set_program_name(const std::string& name);

// A MOUNTPOINT|DEVICE argument: a regular file is the device itself; a directory that is the
// root of a daxfs mount resolves to the device in the mount's source (its fsname).
Result<std::string> resolve_device(const std::string& path, std::string* mountpoint = nullptr);
// True when `fd` is a file or directory of a daxfs mount (a FUSE file answering daxfs's
// counters ioctl, which works after a shutdown too).
bool on_daxfs(int fd);

// Where the device file `device` is mounted as a daxfs ("" when it is not).
std::string mount_of_device(const std::string& device);

}  // namespace daxfs::cli
