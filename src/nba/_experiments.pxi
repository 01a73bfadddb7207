# experiments kernels: included from _core.pyx
