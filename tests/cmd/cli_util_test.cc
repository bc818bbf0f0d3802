// Size parsing and printing used by every command.
#include "fs/cmd/cli_util.h"

#include <catch2/catch.hpp>

using daxfs::cli::format_size;
using daxfs::cli::parse_size;

TEST_CASE("sizes parse with power-of-1024 suffixes and junk is refused", "[cli]") {
  CHECK(parse_size("4096") == 4096u);
  CHECK(parse_size("8K") == 8192u);
  CHECK(parse_size("8k") == 8192u);
  CHECK(parse_size("4KiB") == 4096u);
  CHECK(parse_size("1M") == 1u << 20);
  CHECK(parse_size("9G") == 9ULL << 30);
  CHECK(parse_size("2T") == 2ULL << 40);
  CHECK(parse_size("0x1000") == 4096u);
  CHECK(parse_size("0") == 0u);
  CHECK_FALSE(parse_size(""));
  CHECK_FALSE(parse_size("-1"));
  CHECK_FALSE(parse_size("12Q"));
  CHECK_FALSE(parse_size("4 K"));
  CHECK_FALSE(parse_size("K"));
  CHECK_FALSE(parse_size("99999999999999999999"));
  CHECK_FALSE(parse_size("16777216T"));  // 2^64: overflows
}

TEST_CASE("sizes print in their shortest exact unit", "[cli]") {
  CHECK(format_size(9ULL << 30) == "9G");
  CHECK(format_size(4ULL << 30) == "4G");
  CHECK(format_size(12288) == "12K");
  CHECK(format_size(4097) == "4097");
  CHECK(format_size(0) == "0");
  CHECK(format_size(1536ULL << 20) == "1536M");
}
