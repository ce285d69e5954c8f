"""``hrformer classify IMAGE --model TAG [--weights FILE] [--topk N] [--json OUT]``: the most probable
classes of one image (ImageNet-1k names for a 1000-class model), through the model's eval transform
(:func:`hrformer.classification.predict`: resize, centre crop, normalise)."""

from __future__ import annotations

import argparse

from .errors import check_device, check_input, fail, user_errors
from .files import check_no_overwrite, check_output, model_files, read_image, write_json
from .formatting import table
from .resolve import add_image_and_model_arguments, load_model


def run(args: argparse.Namespace) -> int:
    """Run the ``classify`` command; returns the exit status."""
    check_input(args.image, "IMAGE")
    device = check_device(args.device)
    if args.topk < 1:
        fail(f"--topk {args.topk}: must be positive")
    if args.json:
        check_output(args.json, "--json", (".json",))
    check_no_overwrite(
        [("IMAGE", args.image), *model_files("--model", args.model), *model_files("--weights", args.weights)],
        [("--json", args.json)],
    )
    image = read_image(args.image)

    model = load_model(args.model, args.weights, task="classification", source_flag="--model").model.to(device)
    from ..classification import predict

    with user_errors("classify"):
        result = predict(model, image, topk=args.topk)
    classes = result.to_dict()["classes"]
    rows = [["rank", "class", "name", "probability"]]
    rows += [[str(rank), str(c["index"]), c["name"] or "-", f"{c['probability']:.4f}"]
             for rank, c in enumerate(classes, 1)]
    print(table(rows))
    if args.json:
        write_json({"image": str(args.image), "model": args.model, "classes": classes}, args.json)
    return 0


def add_parser(sub: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Register the ``classify`` command on ``sub``."""
    p = sub.add_parser("classify", help="the most probable classes of an image (needs Pillow)")
    add_image_and_model_arguments(p, "classification weights (e.g. hrformer_t.in1k with --weights hrt_tiny.pth)")
    p.add_argument("--topk", type=int, default=5, help="how many classes, most probable first (default 5)")
    p.add_argument("--json", help="the classes (index, name, probability) as JSON")
    p.add_argument("--device", default="cpu", help="torch device for the network (cpu, cuda, cuda:1, mps)")
    p.set_defaults(func=run, memory_advice="use another --device (the image is resized to the model's input "
                                           "size, so its size does not matter)")
    return p


__all__ = ["add_parser", "run"]
