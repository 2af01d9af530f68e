"""What several test folders share: the real data's place, tiny run folders and manifests,
experiment configs and folders, torchvision's reference figures, phantom image sets."""
