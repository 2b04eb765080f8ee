#include <doctest/doctest.h>
// Filled in by the test suite for the foundation issue.
