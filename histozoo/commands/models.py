"""``histozoo models list | card``: the model zoo's architectures and the pretrained models shipped in the package."""

from __future__ import annotations


def _cmd_list(args) -> int:
    from zoo import models, pretrained

    print("architectures (histozoo train --config, model: NAME):", ", ".join(models.available()))
    names = pretrained.available()
    print(f"\npretrained models shipped in the package ({len(names)}; use as --model pretrained:NAME):")
    print(f"  {'name':24s} {'model':8s} {'MiB':>5s} {'µm/px':>6s} {'Dice':>6s} {'AJI':>6s} {'PQ':>6s}  held-out data")
    for n in names:
        c = pretrained.card(n)
        m = c["metrics"]["model"]
        print(f"  {n:24s} {c['model']:8s} {c['size_bytes'] / 2**20:5.1f} {c['spec'].get('mpp') or 0:6.3f} "
              f"{m.get('pixel_dice', float('nan')):6.3f} {m.get('aji', float('nan')):6.3f} "
              f"{m.get('pq', float('nan')):6.3f}  {c['metrics']['images']}")
    if names:
        print(f"\nmodel cards: histozoo models card NAME  ({pretrained.DIR}/NAME/MODEL_CARD.md)")
    return 0


def _cmd_card(args) -> int:
    import os

    from zoo import pretrained

    with open(os.path.join(pretrained.path(args.name), pretrained.CARD_MD)) as fh:
        print(fh.read())
    return 0


def add(sub) -> None:
    p = sub.add_parser("models", help="the zoo's architectures and the pretrained models shipped in the package")
    s = p.add_subparsers(dest="models_cmd", required=True)
    s.add_parser("list", help="architectures and shipped models with their held-out metrics").set_defaults(
        func=_cmd_list)
    c = s.add_parser("card", help="print a shipped model's model card")
    c.add_argument("name", nargs="?", default="nuclei-unet-monuseg")
    c.set_defaults(func=_cmd_card)
