"""histozoo: a TensorFlow 2 / Keras 3 model zoo for H&E histopathology.

Ranges here; the exact, measured pins live in constraints/host.txt (Python 3.11 host) and
constraints/tfx.txt (the Debian 13 / Python 3.13 TFX environment). Install with
``pip install -e .[dev] -c constraints/host.txt``.
"""

from setuptools import find_packages, setup

setup(
    name="histozoo",
    version="0.1.0",
    description="H&E histopathology model zoo: stain normalization, nuclei segmentation and classification, "
                "trained through TFX, tracked in MLflow, served with TF Serving.",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11,<3.14",
    packages=find_packages(include=["zoo", "zoo.*", "histozoo", "histozoo.*", "pipelines", "pipelines.*",
                                    "serving", "serving.*"]),
    # the packaged sample, the shipped pretrained models and the quickstart's config (data, not code)
    package_data={"zoo": ["sample_data/*/*.csv", "sample_data/*/*.md", "sample_data/*/*/*.png",
                          "pretrained/*/*.keras", "pretrained/*/*.json", "pretrained/*/*.md"],
                  "histozoo": ["quickstart.yaml", "annotate/static/*"]},
    include_package_data=True,
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.15,<4",
        "keras-hub>=0.32,<0.33",
        "mlflow>=3.17,<4",
        "numpy>=2.1,<3",
        "scipy>=1.14,<2",
        "scikit-image>=0.25,<0.27",
        "scikit-learn>=1.5,<2",
        "pandas>=2.2,<4",
        "tifffile>=2025.1",
        "imagecodecs>=2025.3",
        "Pillow>=11,<14",
        "shapely>=2.0,<3",
        "tensorflow-serving-api>=2.19.1,<2.22",
        "grpcio>=1.66",
        "protobuf>=6,<8",
        "tqdm>=4.66",
        "PyYAML>=6",
        "matplotlib>=3.9",
    ],
    extras_require={
        # playwright drives Debian's chromium in the annotation tool's browser test (never `playwright install`);
        # not in the Python 3.13 TFX environment, where that test is not run
        "dev": ["pytest>=8", "playwright>=1.49,<2; python_version < '3.12'"],
        # TFX 1.21 needs glibc >= 2.39 (ml-metadata, TFDV wheels); on older hosts use scripts/tfx_env.sh.
        "tfx": ["tfx==1.21.0", "kfp-pipeline-spec>=0.3,<2.17"],
        # zoo.slides: SVS / NDPI / MRXS / ... through OpenSlide (pyramidal TIFF / OME-TIFF / SVS need only tifffile)
        "slides": ["openslide-python>=1.3", "openslide-bin>=4.0"],
    },
    entry_points={"console_scripts": ["histozoo=histozoo.cli:main"]},
    classifiers=["Programming Language :: Python :: 3", "Topic :: Scientific/Engineering :: Medical Science Apps."],
)
