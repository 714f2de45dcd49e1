# Debian packages of the C API, made by CPack from the install components
# (scripts/package drives it): libvtime0 (the runtime component: the shared
# library, with a shlibs file and the ldconfig trigger) and libvtime-dev (the
# dev component: the libvtime.so link, vtime/vtime.h, the CMake package and
# vtime.pc). Packages need a tree configured with CMAKE_INSTALL_PREFIX=/usr,
# so that the library lands in Debian's multiarch directory.
# Each package's description starts with its own summary line, so there is no
# package-wide CPACK_PACKAGE_DESCRIPTION_SUMMARY (CPack would put it first).
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME vtime)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(VTIME_PACKAGE_MAINTAINER "vtime maintainers <vtime@invalid>" CACHE STRING
    "The Maintainer field of the .deb packages")
set(CPACK_PACKAGE_CONTACT ${VTIME_PACKAGE_MAINTAINER})
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL runtime dev)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Debian ships debug symbols apart (-dbgsym); the packages carry none.
set(CPACK_STRIP_FILES ON)

# The Debian architecture of what was built (a cross build packages arm64 on
# an amd64 host).
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64)$")
  set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE arm64)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE amd64)
endif()

set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME libvtime${PROJECT_VERSION_MAJOR})
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION libs)
# (No Multi-Arch: same field: CMake 3.25's CPack cannot write one.)
string(CONCAT CPACK_DEBIAN_RUNTIME_DESCRIPTION
    "vtime's C API: the VM clock model, timer emulation, saved guest time\n"
    "A library a virtual machine monitor links to give arm64 guests correct, migratable time "
    "under KVM: the VM-wide counter offset rules, the emulation of trapped counter and timer "
    "accesses, the versioned saved form of guest time and the freeze and wallclock migration "
    "policies.")
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
if(CMAKE_CROSSCOMPILING)
  # dpkg-shlibdeps needs the target architecture's packages installed; a
  # cross build names what its library needs instead: the newest symbol
  # versions it binds (objdump -T) are GLIBC_2.32, GCC_3.0 and GLIBCXX_3.4.29
  # (GCC 11), as dpkg-shlibdeps finds for amd64. zlib is linked in statically.
  set(CPACK_DEBIAN_RUNTIME_PACKAGE_DEPENDS
      "libc6 (>= 2.32), libgcc-s1 (>= 3.0), libstdc++6 (>= 11)")
else()
  set(CPACK_DEBIAN_RUNTIME_PACKAGE_SHLIBDEPS ON)
endif()

set(CPACK_DEBIAN_DEV_PACKAGE_NAME libvtime-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS
    "libvtime${PROJECT_VERSION_MAJOR} (= ${PROJECT_VERSION})")
string(CONCAT CPACK_DEBIAN_DEV_DESCRIPTION
    "vtime's C API: development files\n"
    "The header vtime/vtime.h, the libvtime.so link, a CMake package (find_package(vtime), "
    "target vtime::vtime) and a pkg-config file (vtime.pc) for building a virtual machine "
    "monitor against libvtime.")

include(CPack)
