"""The numbers ``hrformer info`` prints without building or profiling anything.

``PUBLISHED``: the HRFormer paper (NeurIPS 2021: Table 2 models, Tables 3 and 5). ``MEASURED``: this
package's exact counts for the registered T/S/B models, as :func:`hrformer.profiling.count_params`,
:func:`hrformer.profiling.profile` (classifier at 224x224) and
:func:`hrformer.profiling.paper_pose_gflops` (pose model, in MACs) give them; they equal the original
code's (``../shared/reference/hrformer_reference.json``). ``tests/test_cli_info.py`` profiles the
models and checks every value (T in the default suite, S and B in the slow one).

``OCR_MEASURED``: the segmentation models of the paper (OCR head, ``head="ocr"``, 19 classes), their
parameters and MACs (conv + linear + attention as executed) at the Cityscapes crop 512x1024 and at
520x520 (PASCAL-Context, COCO-Stuff, ADE20K crops; each class more adds 1,026 parameters).
``tests/test_segmentation.py`` checks them (parameters in the default suite, profiling in the slow one).
"""

from __future__ import annotations

PUBLISHED = {
    "hrformer_t": {"cls_params_m": 8.0, "cls_gflops": 1.83, "pose_params_m": 2.5, "pose_256": 1.3, "pose_384": None},
    "hrformer_s": {"cls_params_m": 13.5, "cls_gflops": 3.56, "pose_params_m": 7.8, "pose_256": 2.8, "pose_384": 6.2},
    "hrformer_b": {"cls_params_m": 50.3, "cls_gflops": 13.71, "pose_params_m": 43.2, "pose_256": 12.2, "pose_384": 26.8},
}

MEASURED = {
    "hrformer_t": {"cls_params": 8035820, "cls_macs_224": 1708032196, "pose_params": 2524759,
                   "pose_paper_macs_256x192": 1288437792, "pose_paper_macs_384x288": 2898985032},
    "hrformer_s": {"cls_params": 13544882, "cls_macs_224": 3364326080, "pose_params": 7746779,
                   "pose_paper_macs_256x192": 2752424448, "pose_paper_macs_384x288": 6192955008},
    "hrformer_b": {"cls_params": 50320098, "cls_macs_224": 13308176164, "pose_params": 43211777,
                   "pose_paper_macs_256x192": 11999349600, "pose_paper_macs_384x288": 26998536600},
}

OCR_MEASURED = {
    "hrformer_s": {"params": 13523856, "macs_512x1024": 207322361472, "macs_520x520": 107114854688},
    "hrformer_b": {"params": 56032512, "macs_512x1024": 523460632440, "macs_520x520": 271050467830},
    "hrformer_b_w13": {"params": 56143776, "macs_512x1024": 540222371616, "macs_520x520": 281061439294},
    "hrformer_b_w15": {"params": 56196480, "macs_512x1024": 561714451680, "macs_520x520": 294226226566},
}
