# bandits kernels: included from _core.pyx
