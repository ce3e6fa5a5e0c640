import BPF
