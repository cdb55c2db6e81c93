#!/usr/bin/env python
"""An external likelihood: JSON parameters on stdin, JSON result on stdout.

x > 0: chi2 = x^2 + y^2 with an observable; x < -0.5: exits with status 4
after writing to stderr; otherwise: writes text that is not JSON.
"""

import json
import sys

params = json.load(sys.stdin)
x, y = params["x"], params["y"]
if x > 0:
    json.dump({"chi2": x * x + y * y, "sum": x + y}, sys.stdout)
elif x < -0.5:
    print(f"physics code failed at x={x}", file=sys.stderr)
    sys.exit(4)
else:
    print("chi2 is twelve")
