"""What the scripts under scripts/ share: the bus's wire format (wire), the
processes a benchmark starts and measures (procs), and the report sections
and tables they write (report). Stdlib only; wire's users also need pyzmq."""
