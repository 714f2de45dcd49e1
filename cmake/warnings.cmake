# One place for the compiler flags every vtime target gets.
add_library(vtime_options INTERFACE)
target_compile_options(vtime_options INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion
  -Wnon-virtual-dtor -Wold-style-cast -Wimplicit-fallthrough)
if(VTIME_WERROR)
  target_compile_options(vtime_options INTERFACE -Werror)
endif()
if(VTIME_SANITIZE)
  target_compile_options(vtime_options INTERFACE
    -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
  target_link_options(vtime_options INTERFACE -fsanitize=address,undefined)
endif()
