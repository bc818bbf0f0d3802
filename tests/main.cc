// The Catch2 main of the unit and integration test binary.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
