import sys

import stele

with stele.open(sys.argv[1], durability="sync") as log:
    for n, amount in enumerate([100, 250, 75], start=1):
        r = log.append("order.placed", {"amount": amount}, key=f"order-{n}")
        print(f"append order-{n}: lsn {r.lsn}, {r.decision.name.lower()}")
    print("get:", log.get_key("order-2").value())
    for rec in log.read(type="order.placed"):
        print(f"read: lsn {rec.lsn}, key {rec.key}, payload {bytes(rec.data).decode()}")
