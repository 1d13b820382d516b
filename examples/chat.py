"""A minimal LangChain chat chain that answers a message and quotes a fitting Tang couplet.

Run after `make ingest` (or `python -m poemrag.ingest --sample`):

    python examples/chat.py "下班后和同事直奔常去的那家火锅店，热热闹闹地涮了一晚上"

The chat model is langchain-core's fake model so the example runs offline; swap in any
real chat model (ChatOpenAI, ChatOllama, …) and keep the rest of the chain.
"""

from __future__ import annotations

import sys

from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableLambda, RunnablePassthrough

from poemrag import PoemRetriever

PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", "你是一位温暖的朋友。回复用户，并在结尾引用这句唐诗：{couplet}"),
        ("human", "{message}"),
    ]
)


def cite(doc: Document) -> str:
    """「couplet」——author《title》"""
    return f"「{doc.page_content}」——{doc.metadata['author']}《{doc.metadata['title']}》"


def build_chain(retriever: PoemRetriever, model: Runnable | None = None) -> Runnable:
    """message → retrieve one couplet → chat model reply → reply + quotation with its source."""
    model = model or FakeListChatModel(responses=["听起来真不错！古人也有同感："])
    top = retriever.with_config(run_name="poem_retriever") | RunnableLambda(lambda docs: docs[0])
    reply = (
        RunnablePassthrough.assign(couplet=lambda x: cite(x["doc"]))
        | PROMPT
        | model
        | StrOutputParser()
    )
    return (
        {"message": RunnablePassthrough(), "doc": top}
        | RunnablePassthrough.assign(reply=reply)
        | RunnableLambda(lambda x: f"{x['reply']}\n{cite(x['doc'])}")
    )


def main() -> None:
    message = sys.argv[1] if len(sys.argv) > 1 else "一个人在外地过中秋，特别想家"
    with PoemRetriever.from_settings(k=1) as retriever:
        print(build_chain(retriever).invoke(message))


if __name__ == "__main__":
    main()
