//! The portal's live event stream in the browser: one `EventSource` on `/portal/events`,
//! each event parsed once into a typed [`crate::model::LiveEvent`], closed when its owner is cleaned up
//! (or when its `close` is called).

#[cfg(feature = "hydrate")]
use crate::model::LiveEvent;

/// An open stream; dropping it closes the connection.
#[cfg(feature = "hydrate")]
pub struct LiveStream {
    source: web_sys::EventSource,
    // Live as long as the stream: the browser calls them for every event and every
    // (re)connection.
    _listener: wasm_bindgen::closure::Closure<dyn Fn(web_sys::MessageEvent)>,
    _opened: wasm_bindgen::closure::Closure<dyn Fn(wasm_bindgen::JsValue)>,
}

#[cfg(feature = "hydrate")]
impl LiveStream {
    /// Opens the stream; `on_event` gets every event of the partner's stream, typed, and
    /// `on_open` runs each time the connection is (re)established — what was committed before
    /// that moment is not sent (a new stream starts at "now"; the browser resumes a dropped
    /// one with `Last-Event-ID`), so read the state then.
    pub fn open(
        on_event: impl Fn(LiveEvent) + 'static,
        on_open: impl Fn() + 'static,
    ) -> Option<Self> {
        use wasm_bindgen::JsCast;
        use wasm_bindgen::closure::Closure;

        let source = web_sys::EventSource::new("/portal/events").ok()?;
        let listener =
            Closure::<dyn Fn(web_sys::MessageEvent)>::new(move |e: web_sys::MessageEvent| {
                if let Some(event) = e
                    .data()
                    .as_string()
                    .and_then(|data| serde_json::from_str::<LiveEvent>(&data).ok())
                {
                    on_event(event);
                }
            });
        // The live page follows fetches; consent events are for webhooks and `/v1/events`.
        for event_type in freshet_rules::EventType::FETCHES {
            let _ = source.add_event_listener_with_callback(
                event_type.as_str(),
                listener.as_ref().unchecked_ref(),
            );
        }
        let opened = Closure::<dyn Fn(wasm_bindgen::JsValue)>::new(move |_| on_open());
        let _ = source.add_event_listener_with_callback("open", opened.as_ref().unchecked_ref());
        Some(Self {
            source,
            _listener: listener,
            _opened: opened,
        })
    }

    /// Closes the connection now.
    pub fn close(&self) {
        self.source.close();
    }
}

#[cfg(feature = "hydrate")]
impl std::fmt::Debug for LiveStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveStream").finish_non_exhaustive()
    }
}

#[cfg(feature = "hydrate")]
impl Drop for LiveStream {
    fn drop(&mut self) {
        self.source.close();
    }
}
