/* empty.c: libq8c.so is q8c_core linked whole; CMake wants one source. */
