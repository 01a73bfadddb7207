# policy kernels: included from _core.pyx
