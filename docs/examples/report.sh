# Everything about the tour's prompt side by side (run tour.sh first): projection, InSPEcT, PEZ, each scored.
softscope explain runs/examples/sst2
