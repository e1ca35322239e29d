# The version comes from the installed tessera/version.h (itself generated from Cargo.toml), so
# it is never typed twice. Compatible: same major version, and for 0.x the same minor.
get_filename_component(_tessera_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
file(STRINGS "${_tessera_prefix}/include/tessera/version.h" _tessera_line
     REGEX "^#define TESSERA_VERSION_STRING \"[^\"]*\"")
string(REGEX REPLACE "^#define TESSERA_VERSION_STRING \"([^\"]*)\".*" "\\1" PACKAGE_VERSION "${_tessera_line}")
unset(_tessera_line)
unset(_tessera_prefix)

set(PACKAGE_VERSION_COMPATIBLE FALSE)
set(PACKAGE_VERSION_EXACT FALSE)
if(PACKAGE_FIND_VERSION)
  string(REPLACE "." ";" _have "${PACKAGE_VERSION}")
  list(GET _have 0 _have_major)
  list(GET _have 1 _have_minor)
  if(PACKAGE_VERSION VERSION_GREATER_EQUAL PACKAGE_FIND_VERSION
     AND _have_major EQUAL PACKAGE_FIND_VERSION_MAJOR
     AND (NOT _have_major EQUAL 0 OR _have_minor EQUAL PACKAGE_FIND_VERSION_MINOR))
    set(PACKAGE_VERSION_COMPATIBLE TRUE)
  endif()
  if(PACKAGE_VERSION VERSION_EQUAL PACKAGE_FIND_VERSION)
    set(PACKAGE_VERSION_EXACT TRUE)
  endif()
else()
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
endif()
