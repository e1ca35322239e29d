# find_package(Tessera) support for an installed libtessera. Relocatable: every path is found
# from this file's own location (<prefix>/lib/cmake/Tessera).
#
# Targets:
#   Tessera::tessera         the shared library (libtessera.so), headers on the include path
#   Tessera::tessera_static  the static library (libtessera.a) with its system libraries
# The C header is <tessera.h>; the C++ ISCDesk facade is <tessera/iscdesk.hpp>.
get_filename_component(_tessera_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)

if(NOT TARGET Tessera::tessera)
  add_library(Tessera::tessera SHARED IMPORTED)
  set_target_properties(Tessera::tessera PROPERTIES
    IMPORTED_LOCATION "${_tessera_prefix}/lib/libtessera.so"
    IMPORTED_NO_SONAME TRUE
    INTERFACE_INCLUDE_DIRECTORIES "${_tessera_prefix}/include")
endif()

if(NOT TARGET Tessera::tessera_static AND EXISTS "${_tessera_prefix}/lib/libtessera.a")
  find_package(Threads REQUIRED)
  add_library(Tessera::tessera_static STATIC IMPORTED)
  set_target_properties(Tessera::tessera_static PROPERTIES
    IMPORTED_LOCATION "${_tessera_prefix}/lib/libtessera.a"
    INTERFACE_INCLUDE_DIRECTORIES "${_tessera_prefix}/include"
    INTERFACE_LINK_LIBRARIES "Threads::Threads;${CMAKE_DL_LIBS};m")
endif()

set(Tessera_INCLUDE_DIRS "${_tessera_prefix}/include")
set(Tessera_LIBRARIES Tessera::tessera)
unset(_tessera_prefix)
