// Who owns device bytes on a mounted daxfs, as its reverse map says (the FSMAP ioctl, as
// `daxfsctl fsmap` shows it): for the poison commands, which name the owners of each poisoned
// range. Single-threaded (CLI use).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "pmemdev/device.h"

namespace daxfs::cli {

// For each of `ranges` (device bytes), its owners on the filesystem mounted at `mountpoint`: a
// JSON array of {"kind", "device_offset", "length"} objects, one per owner and piece, plus
// "inode" and "path" for an owner with an inode, "offset" (the file offset of device_offset) and
// "flags" for file data. Free blocks have no owner. nullopt when the map cannot be read (the
// FSMAP ioctl is root's; a shut-down filesystem refuses it).
std::optional<std::vector<nlohmann::json>> range_owners(const std::string& mountpoint,
                                                        const std::vector<pmemdev::ByteRange>& ranges);

// One line per owner, each "  owner: ..." (or "  owner: none (free)").
std::string format_owners(const nlohmann::json& owners);

}  // namespace daxfs::cli
