package eval

import (
	"context"
	"fmt"
	"io"

	"github.com/matsteer/matsteer/llama"
	"github.com/matsteer/matsteer/progress"
)

// DefaultChatReplyTokens is the default length of each reply of
// ChatReplies.
const DefaultChatReplyTokens = 48

// ChatReplies prepares KL sequences where a chat answer is written: each
// prompt becomes a user turn in the model's chat template, the unsteered
// model writes its greedy reply (at most maxTokens tokens; 0:
// DefaultChatReplyTokens), and the sequence is the turn followed by the
// reply, compared from the reply's first token on (RetentionSequences).
//
// Plain neutral text has no such positions, and they are where steered
// generation starts: a gate that opens on the first tokens of an answer
// spends its change there, unseen by a KL measured on plain text. The end
// of turn itself is not compared. A prompt the model answers with an
// immediate end of turn gives a nil sequence (skipped).
func (r *Runner) ChatReplies(ctx context.Context, prompts []string, maxTokens int, progressTo io.Writer) ([]KLSequence, error) {
	if maxTokens == 0 {
		maxTokens = DefaultChatReplyTokens
	}
	toks, maxTok, err := r.generationPrompts("chat replies", prompts, GenerationOptions{Chat: true, MaxTokens: maxTokens})
	if err != nil {
		return nil, err
	}
	r.hooks.Clear()
	var bar *progress.Bar
	if progressTo != nil {
		bar = progress.New(progressTo, int64(len(prompts)), "chat replies", "reply")
		defer bar.Finish()
	}
	seqs := make([]KLSequence, len(prompts))
	for i, tk := range toks {
		seq := append(make([]llama.Token, 0, len(tk)+maxTok), tk...)
		_, err := r.lctx.Generate(ctx, tk, llama.GenerateOptions{MaxTokens: maxTok},
			func(tok llama.Token, _ string) error {
				seq = append(seq, tok)
				return nil
			})
		if err != nil {
			return nil, ctxErr(ctx, fmt.Errorf("eval: chat replies, prompt %d: %w", i+1, err))
		}
		if len(seq) > len(tk) {
			seqs[i] = KLSequence{Tokens: seq, Start: len(tk)}
		}
		bar.Add(1)
	}
	return seqs, nil
}

// CheckChatReplies reports whether ChatReplies can run prompts (the
// model's chat template, every turn plus maxTokens within the context)
// without generating anything.
func (r *Runner) CheckChatReplies(prompts []string, maxTokens int) error {
	if maxTokens == 0 {
		maxTokens = DefaultChatReplyTokens
	}
	_, _, err := r.generationPrompts("chat replies", prompts, GenerationOptions{Chat: true, MaxTokens: maxTokens})
	return err
}
