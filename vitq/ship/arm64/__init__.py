"""``vitq verify --arch arm64``: every shipped mobile file run in the aarch64 builds of its runtimes, emulated as the
ARM CPUs phones have (one per XNNPACK kernel family), and judged as the x86 checks are.

targets: the CPU models and runtimes (data). runtime_env: prepares an emulated (or x86-64) runtime once, under the
user's cache folder. known_answer: the program that proves an emulator computes right before it is trusted.
guest: the script that runs inside the emulator (no vitq import). check: runs and judges. record: arm64.json and
report.md's section.
"""
