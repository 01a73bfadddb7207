# vw kernels: included from _core.pyx
