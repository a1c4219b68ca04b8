"""Prints each executed notebook's wall time and kernel CPU time after the run."""


def pytest_terminal_summary(terminalreporter):
  rows = []
  for report in terminalreporter.stats.get("passed", []) + terminalreporter.stats.get("failed", []):
    times = dict(report.user_properties)
    if report.when == "call" and "wall_s" in times:
      rows.append(f"{report.nodeid.split('[')[-1].rstrip(']'):12} wall {times['wall_s']:7.1f} s, "
                  f"kernel CPU {times.get('kernel_cpu_s', float('nan')):7.1f} s")
  if rows:
    terminalreporter.write_sep("-", "notebook run times")
    for row in rows:
      terminalreporter.write_line(row)
