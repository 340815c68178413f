"""Compiling an artifact for a target with Apache TVM: the build (in a child process, cached by content), the
integer dense kernels (VNNI, sdot, smull) and the disassembly check that a library uses them."""
