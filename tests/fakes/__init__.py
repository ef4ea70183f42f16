"""Stand-ins for NVML (`pynvml`, from nvidia-ml-py) and amdsmi, for tests without a GPU.

They carry the real libraries' function names, argument orders, return shapes and units (NVML:
mW, mJ, MHz, degrees C, a clock-event bitmask; amdsmi: W, an energy accumulator in ticks of
`counter_resolution` microjoules, MHz under `cur_clk` or `clk`, "N/A" for unsupported fields), and
are injected where parity imports the real ones (`sys.modules` or `telemetry.open_reader`'s
`import_module`).
"""
