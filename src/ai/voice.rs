//! What a bot says with ([`Voice`]): the configured engine, the bot's persona, prompts and
//! daily token budget, and the offline engine when the configured one fails.

use std::sync::Arc;

use crate::error::Result;

/// Called when the engine failed and the offline engine answered instead (the daemon counts
/// it as an error).
pub type OnFallback = Arc<dyn Fn() + Send + Sync>;

/// What a bot says with: the configured engine, the bot's persona, prompt overrides and daily
/// token budget. When the engine fails (server down, budget spent), the bot says what the
/// offline engine says instead, and the failure is logged and counted.
pub struct Voice {
    pub engine: Arc<dyn super::LanguageModel>,
    pub bot: String,
    pub persona: Option<String>,
    pub prompts: super::Prompts,
    pub budget: Option<u64>,
    /// Whose daily budget pays (`None`: the bot's own): `user:<id>` for an API caller.
    pub payer: Option<String>,
    pub on_fallback: Option<OnFallback>,
}

impl Voice {
    pub fn ask<'a>(&'a self, channel: &'a str, messages: &'a [super::Message]) -> super::Ask<'a> {
        super::Ask {
            bot: &self.bot,
            channel,
            messages,
            prompts: &self.prompts,
            persona: self.persona.as_deref(),
            budget: self.budget,
            payer: self.payer.as_deref().unwrap_or(&self.bot),
        }
    }

    /// Counts and logs that the engine failed and the offline engine answers instead.
    pub fn fell_back(&self, what: &str, e: &anyhow::Error) {
        if let Some(count) = &self.on_fallback {
            count();
        }
        tracing::warn!(
            bot = %self.bot,
            engine = %self.engine.name(),
            error = %crate::error::render(e).causes.last().map_or_else(|| e.to_string(), Clone::clone),
            "the AI could not write the {what}; posting the offline engine's instead"
        );
    }

    /// The reply to `question`. `strict`: an engine failure is an error (the command line)
    /// instead of the offline engine's reply (the daemon).
    pub async fn reply(
        &self,
        channel: &str,
        context: &[super::Message],
        question: super::Question<'_>,
        prompt: Option<&str>,
        strict: bool,
    ) -> Result<String> {
        let mut prompts;
        let ask = match prompt {
            Some(p) => {
                prompts = self.prompts.clone();
                prompts.reply = format!("{p}\n\n{}", prompts.reply);
                super::Ask {
                    prompts: &prompts,
                    ..self.ask(channel, context)
                }
            }
            None => self.ask(channel, context),
        };
        match self.engine.reply(ask, question).await {
            Ok(t) => Ok(t),
            Err(e) if strict => Err(e),
            Err(e) => {
                self.fell_back("reply", &e);
                Ok(super::offline::reply(channel, context, &question))
            }
        }
    }
}
