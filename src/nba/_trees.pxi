# trees kernels: included from _core.pyx
