"""Every name this project logs to TensorBoard, in one place: scalar, image and text tags, HParams
keys and the kernel class names that the tags carry.

The callbacks that write (``callbacks/kernel_snapshot.py``, ``callbacks/hparams_session.py``,
``callbacks/scalars_layout.py``, ``callbacks/depthwise_init.py``) and the tools that read
(``neural_echos/tools/report.py``, the tests) spell tags through this module only. It imports
neither torch nor Lightning (a test checks), so that ``run.py report`` stays light.
"""

from __future__ import annotations

# ---------------------------------------------------------------------------------------------
# kernel classes (neural_echos.classifiers.CLASSES and neural_echos.taxonomy.DETAILED_CLASSES
# are the same tuples; tests/neural_echos/test_logged_names.py checks that they agree)

CLASSES = ("on_center", "off_center", "other")
EXCESS_CLASSES = CLASSES[:2]  # "other" is what is left: its excess over chance says nothing new
TAXONOMY_CLASSES = (
    "on_center",
    "off_center",
    "blob",
    "delta",
    "shifted_delta",
    "first_derivative",
    "second_derivative",
    "other",
)

# ---------------------------------------------------------------------------------------------
# scalars

ACC = "val/acc1"
VAL_LOSS = "val/loss"
TRAIN_LOSS_EPOCH = "train/loss_epoch"
LEARNING_RATE = "train/lr"
EPOCH = "epoch"  # Lightning's companion scalar, mapping steps to epochs (0-based)

KERNELS = "kernels"
SHARE = "kernels/proportion/{}"  # .format(class): share of all depthwise kernels
CHANCE = "kernels/chance/{}"  # the share the classifier gives null kernels
EXCESS = "kernels/excess/{}"  # share minus chance, on_center and off_center
THRESHOLD = "kernels/threshold/{}"  # .format("7x7")
LAYER_SHARE = "kernels/layer/{}/{}"  # .format(layer, class)
TAXONOMY_SHARE = "kernels/taxonomy/{}"
TAXONOMY_CHANCE = "kernels/taxonomy_chance/{}"
NAMED = "kernels/named"
NAMED_CHANCE = "kernels/named_chance"

# kernel tracking (callbacks/kernel_tracking.py): which kernels kept, gained or lost their class
TRACKING_TRANSITION = (
    "tracking/{}/{}"  # .format(since_init | since_previous, retained | gained | lost[_chance])
)
TRACKING_DRIFT = "tracking/drift/{}"  # .format(cosine_distance | norm_change | relative_distance)
TRACKING_POPULATION = "tracking/population/{}/{}"  # .format(kernel size "7x7", dog_energy | mean_score)
TRACKING_LAYER = "tracking/layer/{}/{}"  # .format(layer, statistic)

# ---------------------------------------------------------------------------------------------
# images, histograms, text, embeddings

GRID_IMAGE = "kernels/grid/{}"  # .format(layer or stage)
LAYERS_IMAGE = "kernels/layers"
TAXONOMY_IMAGE = "kernels/taxonomy"
CENTROIDS_IMAGE = "kernels/centroids"
WEIGHTS_HISTOGRAM = "kernels/weights/{}"
CLASSIFIER_TEXT = "kernels/classifier"
NOTES_TEXT = "kernels/notes"
INIT_SUMMARY_TEXT = "init/summary"
TRACKING_TRANSITIONS_IMAGE = "tracking/transitions"
TRACKING_LAYERS_IMAGE = "tracking/layers"
TRACKING_NOTES_TEXT = "tracking/notes"
PROJECTOR_EMBEDDING = "depthwise_kernels"  # the Projector's tensor name (callbacks/kernel_projector.py)


def text_tag(tag: str) -> str:
    """The tag under which ``SummaryWriter.add_text(tag, ...)`` stores its text (it appends a suffix)."""
    return f"{tag}/text_summary"


# ---------------------------------------------------------------------------------------------
# HParams keys (the HParams session of callbacks/hparams_session.py; hparams.yaml shares the
# init keys, written by callbacks/depthwise_init.py)

INIT_METHOD = "init/method"  # the init method's registry name; "none" for the model's own init
INIT_SETTING = "init/{}"  # .format(option): one key per option of every registered init method
INIT_SETTINGS = "init/settings"  # the options that differ from the method's defaults, in one line
INIT_FREEZE = "init/freeze"  # True: the depthwise weights stayed fixed (DepthwiseInit(freeze=True))
INIT_FROZEN_LAYERS = "init/n_frozen_layers"  # how many depthwise layers were frozen
LEGACY_INIT_METHOD = "init"  # the session key of the method before it became INIT_METHOD (read only)
NOT_APPLICABLE = "-"  # the value of an init option the run's method does not take
DATA = "data"
DATA_BATCH_SIZE = "data/batch_size"
MODEL = "model"
MODEL_KERNEL_SIZES = "model/kernel_sizes"
MODEL_KWARGS = "model/kwargs"
MODEL_LR = "model/lr"
MODEL_OPTIMIZER = "model/optimizer"
SEED = "seed"
SNAPSHOT_CLASSIFIER = "snapshot/classifier"

# the columns TensorBoard's HParams table shows before any box is ticked (it shows five)
HPARAMS_SHOWN = (INIT_METHOD, INIT_SETTINGS, MODEL, SEED, DATA_BATCH_SIZE)

# metrics of the HParams table (TensorBoard shows each one's last value in the run)
HPARAMS_METRICS = (
    ACC,
    SHARE.format("on_center"),
    CHANCE.format("on_center"),
    SHARE.format("off_center"),
    CHANCE.format("off_center"),
    EXCESS.format("on_center"),
    EXCESS.format("off_center"),
)
