"""Student models: hub transformers, a truncated copy of the teacher, and static-embedding
BiLSTM / CNN / CNN-LSTM students and their ensemble.

Every student is an ``nn.Module`` mapping a batch dict (``input_ids``, ``attention_mask``: (B, T))
to logits (B, num_labels).

Sources:
- truncated teacher: DistilBERT's initialisation from every other teacher layer, Sanh et al. 2019
  (arXiv:1910.01108);
- BiLSTM student: Tang et al. 2019 (arXiv:1903.12136), Nityasya et al. 2022;
- CNN student: Kim 2014, "Convolutional Neural Networks for Sentence Classification" (filters 3/4/5);
- CNN-LSTM fusion and the shared-embedding heterogeneous ensemble: Lin et al. 2024;
- hashed bag of subword n-grams beside the CNN: fastText, Joulin et al. 2017 (arXiv:1607.01759).
"""

from bertcompress.models.students.class_bias import fold_class_bias
from bertcompress.models.students.ensemble import EnsembleStudent, ensemble_student
from bertcompress.models.students.hf import HFStudent, truncate_layers, truncation_layers
from bertcompress.models.students.ngram import HashedNgramBag
from bertcompress.models.students.static import (
    BiLSTMEncoder,
    BiLSTMTagger,
    CNNLSTMEncoder,
    KimCNNEncoder,
    StaticEmbedding,
    StaticStudent,
    bilstm_student,
    cnn_lstm_student,
    cnn_student,
    read_word_vectors,
)

__all__ = [
    "BiLSTMEncoder", "BiLSTMTagger", "CNNLSTMEncoder", "EnsembleStudent", "HFStudent", "HashedNgramBag",
    "KimCNNEncoder", "StaticEmbedding", "StaticStudent", "bilstm_student", "cnn_lstm_student", "cnn_student",
    "ensemble_student", "fold_class_bias", "read_word_vectors", "truncate_layers", "truncation_layers",
]  # fmt: skip
