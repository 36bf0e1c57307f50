"""Frame probabilities to text: greedy and beam search, language-model fusion, lexicons, the character LM."""
